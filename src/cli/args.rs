//! A small, strict command-line parser: `--name value`, `--name=value`, repeated options, `--`
//! to end options, and a few short aliases. Unknown options are usage errors, never ignored.

use std::ffi::OsString;

/// One option a command accepts.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub long: &'static str,
    pub short: Option<char>,
    pub takes_value: bool,
    pub repeatable: bool,
}

impl Spec {
    pub const fn flag(long: &'static str) -> Spec {
        Spec {
            long,
            short: None,
            takes_value: false,
            repeatable: false,
        }
    }
    pub const fn value(long: &'static str) -> Spec {
        Spec {
            long,
            short: None,
            takes_value: true,
            repeatable: false,
        }
    }
    pub const fn many(long: &'static str) -> Spec {
        Spec {
            long,
            short: None,
            takes_value: true,
            repeatable: true,
        }
    }
    pub const fn short(mut self, c: char) -> Spec {
        self.short = Some(c);
        self
    }
}

/// Options every command accepts.
pub const GLOBAL: [Spec; 3] = [
    Spec::value("output").short('o'),
    Spec::flag("help").short('h'),
    Spec::flag("version").short('V'),
];

/// The parsed command line of one command.
#[derive(Debug, Default)]
pub struct Parsed {
    pub positionals: Vec<String>,
    options: Vec<(&'static str, String)>,
}

impl Parsed {
    pub fn flag(&self, long: &str) -> bool {
        self.options.iter().any(|(n, _)| *n == long)
    }
    pub fn value(&self, long: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| *n == long)
            .map(|(_, v)| v.as_str())
    }
    pub fn values(&self, long: &str) -> Vec<&str> {
        self.options
            .iter()
            .filter(|(n, _)| *n == long)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses `args` against `specs` (plus [`GLOBAL`]).
pub fn parse(args: &[OsString], specs: &[Spec]) -> Result<Parsed, String> {
    let all: Vec<Spec> = specs.iter().chain(GLOBAL.iter()).copied().collect();
    let mut out = Parsed::default();
    let mut it = args.iter();
    let mut only_positionals = false;
    while let Some(raw) = it.next() {
        let arg = raw
            .to_str()
            .ok_or_else(|| format!("argument {raw:?} is not valid UTF-8"))?;
        if only_positionals || arg == "-" || !arg.starts_with('-') {
            out.positionals.push(arg.to_owned());
            continue;
        }
        if arg == "--" {
            only_positionals = true;
            continue;
        }
        let (spec, inline) = if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let spec = all
                .iter()
                .find(|s| s.long == name)
                .ok_or_else(|| format!("unknown option --{name}"))?;
            (spec, inline)
        } else {
            let mut chars = arg.strip_prefix('-').unwrap_or(arg).chars();
            let (Some(c), rest) = (chars.next(), chars.as_str()) else {
                return Err(format!("unknown option {arg}"));
            };
            let spec = all
                .iter()
                .find(|s| s.short == Some(c))
                .ok_or_else(|| format!("unknown option -{c}"))?;
            let inline = (!rest.is_empty()).then(|| rest.trim_start_matches('=').to_owned());
            (spec, inline)
        };
        let value = if spec.takes_value {
            match inline {
                Some(v) => v,
                None => it
                    .next()
                    .and_then(|v| v.to_str())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("option --{} needs a value", spec.long))?,
            }
        } else {
            if inline.is_some() {
                return Err(format!("option --{} takes no value", spec.long));
            }
            String::new()
        };
        if !spec.repeatable && out.options.iter().any(|(n, _)| *n == spec.long) {
            return Err(format!("option --{} given more than once", spec.long));
        }
        out.options.push((spec.long, value));
    }
    Ok(out)
}

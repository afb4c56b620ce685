//! JWK Set parsing (RFC 7517, RFC 7518 section 6, RFC 8037) into pinned [`Key`]s.
//!
//! Keys with a key type or curve hopguard does not implement are skipped, as RFC 7517
//! section 5 asks. Keys that are not for signature verification (`use` other than
//! `sig`, `key_ops` without `verify`) are skipped. A key of a known type that is
//! broken (bad base64url, off-curve point, short RSA modulus, short HMAC secret,
//! private material, an `alg` that does not fit) is an error with its JSON path; the
//! caller decides whether that refuses the whole set (inline config) or only the key.

use crate::algorithm::{Alg, AlgName, AlgSet};
use crate::b64;
use crate::config::ConfigError;
use crate::key::{Key, Material};
use serde_json::{Map, Value};

/// Most keys accepted in one set.
pub const MAX_KEYS: usize = 256;
/// Smallest accepted RSA modulus (RFC 7518 3.3 and 3.5).
pub const RSA_MIN_BITS: usize = 2048;
/// Largest accepted RSA modulus: bounds verification cost.
pub const RSA_MAX_BITS: usize = 8192;

/// The result of reading a JWK Set.
#[derive(Debug, Default)]
pub struct JwkSet {
    pub keys: Vec<Key>,
    /// Broken keys of known types, in order.
    pub errors: Vec<ConfigError>,
    /// Keys passed over on purpose (unknown type, not for verification), as notes.
    pub skipped: Vec<String>,
}

/// How long parsed keys will live, which decides whether precomputing pays off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// A provider's key set: each key verifies many tokens, so keys get their tables.
    Lasting,
    /// A DPoP proof's `jwk`: one signature. Ed25519 keys skip their table (building it
    /// costs more than the one verification it would speed up); RSA and EC keys are the
    /// same either way.
    OneShot,
}

impl JwkSet {
    /// Reads `{"keys":[...]}` at `path`, for keys that last. Errors only when the set
    /// itself is unusable.
    pub fn parse(value: &Value, path: &str) -> Result<JwkSet, ConfigError> {
        JwkSet::parse_for(value, path, Lifetime::Lasting)
    }

    /// [`JwkSet::parse`], for keys of the given lifetime.
    pub fn parse_for(value: &Value, path: &str, lifetime: Lifetime) -> Result<JwkSet, ConfigError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ConfigError::new(path, "a JWK Set must be a JSON object with \"keys\""))?;
        let keys_path = format!("{path}.keys");
        let list = obj
            .get("keys")
            .ok_or_else(|| ConfigError::new(&keys_path, "required"))?
            .as_array()
            .ok_or_else(|| ConfigError::new(&keys_path, "must be an array of JWKs"))?;
        if list.len() > MAX_KEYS {
            return Err(ConfigError::new(
                &keys_path,
                format!("{} keys; at most {MAX_KEYS} are accepted", list.len()),
            ));
        }
        let mut set = JwkSet::default();
        for (i, jwk) in list.iter().enumerate() {
            let p = format!("{keys_path}[{i}]");
            match parse_key(jwk, &p, lifetime) {
                Ok(Parsed::Key(k)) => set.keys.push(*k),
                Ok(Parsed::Skipped(why)) => set.skipped.push(format!("{p}: {why}")),
                Err(e) => set.errors.push(e),
            }
        }
        Ok(set)
    }
}

enum Parsed {
    Key(Box<Key>),
    Skipped(String),
}

fn parse_key(jwk: &Value, path: &str, lifetime: Lifetime) -> Result<Parsed, ConfigError> {
    let o = jwk
        .as_object()
        .ok_or_else(|| ConfigError::new(path, "a JWK must be a JSON object"))?;
    let kty = str_member(o, "kty", path)?.ok_or_else(|| ConfigError::new(&format!("{path}.kty"), "required"))?;
    let kid = str_member(o, "kid", path)?.map(str::to_owned);

    // Intended use (RFC 7517 4.2, 4.3).
    let use_ = str_member(o, "use", path)?;
    let ops = key_ops(o, path)?;
    if let (Some(u), Some(ops)) = (use_, &ops) {
        let consistent = match u {
            "sig" => ops.iter().all(|op| op == "sign" || op == "verify"),
            "enc" => ops.iter().all(|op| op != "sign" && op != "verify"),
            _ => true,
        };
        if !consistent {
            return Err(ConfigError::new(
                &format!("{path}.key_ops"),
                "inconsistent with \"use\" (RFC 7517 4.3)",
            ));
        }
    }
    if let Some(u) = use_ {
        if u != "sig" {
            return Ok(Parsed::Skipped(format!("use is {u:?}, not \"sig\"")));
        }
    }
    if let Some(ops) = &ops {
        if !ops.iter().any(|op| op == "verify") {
            return Ok(Parsed::Skipped("key_ops does not include \"verify\"".into()));
        }
    }

    // The key's own alg, if any.
    let alg_path = format!("{path}.alg");
    let own_alg = match str_member(o, "alg", path)? {
        None => None,
        Some(name) => match Alg::parse(name) {
            AlgName::Known(a) => Some(a),
            AlgName::None => return Err(ConfigError::new(&alg_path, "\"none\" is not a signature algorithm")),
            AlgName::Unsupported => {
                return Ok(Parsed::Skipped(format!(
                    "alg {:?} is not a supported JWS algorithm",
                    crate::json::truncate(name, 32)
                )))
            }
        },
    };

    let (material, family) = match kty {
        "RSA" => rsa_key(o, path)?,
        "EC" => match ec_key(o, path)? {
            Some(m) => m,
            None => return Ok(Parsed::Skipped("EC curve not supported".into())),
        },
        "OKP" => match okp_key(o, path, lifetime)? {
            Some(m) => m,
            None => return Ok(Parsed::Skipped("OKP curve not supported".into())),
        },
        "oct" => oct_key(o, path)?,
        other => {
            return Ok(Parsed::Skipped(format!(
                "kty {:?} not supported",
                crate::json::truncate(other, 16)
            )))
        }
    };
    let algs = match own_alg {
        Some(a) if family.contains(a) => AlgSet::of(&[a]),
        Some(a) => {
            return Err(ConfigError::new(
                &alg_path,
                format!("{} does not fit this {kty} key", a.name()),
            ))
        }
        None => family,
    };
    Ok(Parsed::Key(Box::new(Key { kid, algs, material })))
}

fn str_member<'a>(o: &'a Map<String, Value>, name: &str, path: &str) -> Result<Option<&'a str>, ConfigError> {
    match o.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ConfigError::new(&format!("{path}.{name}"), "must be a string")),
    }
}

fn key_ops(o: &Map<String, Value>, path: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let p = format!("{path}.key_ops");
    match o.get("key_ops") {
        None => Ok(None),
        Some(Value::Array(a)) => {
            let mut out: Vec<String> = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                let s = v
                    .as_str()
                    .ok_or_else(|| ConfigError::new(&format!("{p}[{i}]"), "must be a string"))?;
                if out.iter().any(|x| x == s) {
                    return Err(ConfigError::new(
                        &format!("{p}[{i}]"),
                        "duplicate key operation (RFC 7517 4.3)",
                    ));
                }
                out.push(s.to_owned());
            }
            Ok(Some(out))
        }
        Some(_) => Err(ConfigError::new(&p, "must be an array of strings")),
    }
}

fn bytes_member(o: &Map<String, Value>, name: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let p = format!("{path}.{name}");
    let s = match o.get(name) {
        None => return Err(ConfigError::new(&p, "required")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ConfigError::new(&p, "must be a base64url string")),
    };
    b64::decode(s).ok_or_else(|| ConfigError::new(&p, "not valid base64url without padding"))
}

fn refuse_private(o: &Map<String, Value>, path: &str, members: &[&str]) -> Result<(), ConfigError> {
    match members.iter().find(|m| o.contains_key(**m)) {
        Some(m) => Err(ConfigError::new(
            &format!("{path}.{m}"),
            "private key material does not belong in a verification key set",
        )),
        None => Ok(()),
    }
}

fn rsa_key(o: &Map<String, Value>, path: &str) -> Result<(Material, AlgSet), ConfigError> {
    refuse_private(o, path, &["d", "p", "q", "dp", "dq", "qi", "oth"])?;
    let n = bytes_member(o, "n", path)?;
    let e = bytes_member(o, "e", path)?;
    // Validated and prepared for verification (Montgomery constants) once, here.
    let key = crate::rsa_key::RsaKey::new(&n, &e).map_err(|err| match err {
        crate::rsa_key::RsaKeyError::ModulusTooShort(bits) => ConfigError::new(
            &format!("{path}.n"),
            format!("RSA modulus of {bits} bits; at least {RSA_MIN_BITS} are required (RFC 7518 3.3)"),
        ),
        crate::rsa_key::RsaKeyError::ModulusTooLong(bits) => ConfigError::new(
            &format!("{path}.n"),
            format!("RSA modulus of {bits} bits; at most {RSA_MAX_BITS} are accepted"),
        ),
        other => ConfigError::new(&format!("{path}.e"), format!("invalid RSA public key: {other}")),
    })?;
    Ok((
        Material::Rsa(key),
        AlgSet::of(&[Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512]),
    ))
}

fn ec_key(o: &Map<String, Value>, path: &str) -> Result<Option<(Material, AlgSet)>, ConfigError> {
    let crv = str_member(o, "crv", path)?.ok_or_else(|| ConfigError::new(&format!("{path}.crv"), "required"))?;
    let size = match crv {
        "P-256" => 32,
        "P-384" => 48,
        "P-521" => 66,
        _ => return Ok(None),
    };
    refuse_private(o, path, &["d"])?;
    let x = bytes_member(o, "x", path)?;
    let y = bytes_member(o, "y", path)?;
    for (name, c) in [("x", &x), ("y", &y)] {
        if c.len() != size {
            return Err(ConfigError::new(
                &format!("{path}.{name}"),
                format!(
                    "{} bytes; {crv} coordinates must be exactly {size} (RFC 7518 6.2.1.2)",
                    c.len()
                ),
            ));
        }
    }
    // The key's precomputed table (crate::ecdsa) is built here, once per configuration.
    let off_curve = || ConfigError::new(path, format!("the point (x, y) is not on curve {crv}"));
    let m = match crv {
        "P-256" => (
            Material::P256(crate::ecdsa::P256Key::from_xy(&x, &y).ok_or_else(off_curve)?),
            AlgSet::of(&[Alg::ES256]),
        ),
        "P-384" => (
            Material::P384(crate::ecdsa::P384Key::from_xy(&x, &y).ok_or_else(off_curve)?),
            AlgSet::of(&[Alg::ES384]),
        ),
        _ => (
            Material::P521(crate::ecdsa::P521Key::from_xy(&x, &y).ok_or_else(off_curve)?),
            AlgSet::of(&[Alg::ES512]),
        ),
    };
    Ok(Some(m))
}

fn okp_key(o: &Map<String, Value>, path: &str, lifetime: Lifetime) -> Result<Option<(Material, AlgSet)>, ConfigError> {
    let crv = str_member(o, "crv", path)?.ok_or_else(|| ConfigError::new(&format!("{path}.crv"), "required"))?;
    if crv != "Ed25519" {
        return Ok(None);
    }
    refuse_private(o, path, &["d"])?;
    let x = bytes_member(o, "x", path)?;
    let x: [u8; 32] = x.as_slice().try_into().map_err(|_| {
        ConfigError::new(
            &format!("{path}.x"),
            "an Ed25519 public key is exactly 32 bytes (RFC 8037 2)",
        )
    })?;
    let key = match lifetime {
        Lifetime::Lasting => crate::ed25519::Ed25519Key::from_bytes(&x),
        Lifetime::OneShot => crate::ed25519::Ed25519Key::one_shot(&x),
    }
    .ok_or_else(|| ConfigError::new(&format!("{path}.x"), "not a valid Ed25519 public key"))?;
    Ok(Some((Material::Ed25519(key), AlgSet::of(&[Alg::EdDSA]))))
}

fn oct_key(o: &Map<String, Value>, path: &str) -> Result<(Material, AlgSet), ConfigError> {
    let k = bytes_member(o, "k", path)?;
    let fits: Vec<Alg> = [Alg::HS256, Alg::HS384, Alg::HS512]
        .into_iter()
        .filter(|a| k.len() >= a.hmac_min_key_bytes())
        .collect();
    let algs = AlgSet::of(&fits);
    if algs.is_empty() {
        return Err(ConfigError::new(
            &format!("{path}.k"),
            format!(
                "HMAC secret of {} bytes; at least 32 are required (RFC 7518 3.2)",
                k.len()
            ),
        ));
    }
    Ok((Material::Hmac(k), algs))
}

//! A secret-free description of an accepted configuration (no key material, ever).

use hopguard::algorithm::AlgSet;
use hopguard::config::{Config, Location, Provider, Requirement};
use hopguard::key::{Key, Material};
use serde_json::{json, Value};

pub fn requirement_name(r: Requirement) -> &'static str {
    match r {
        Requirement::Required => "required",
        Requirement::AllowMissing => "allowMissing",
        Requirement::AllowMissingOrFailed => "allowMissingOrFailed",
    }
}

pub fn algs(set: AlgSet) -> Vec<&'static str> {
    set.iter().map(|a| a.name()).collect()
}

pub fn key_type(k: &Key) -> String {
    match &k.material {
        Material::Hmac(secret) => format!("oct ({} byte secret)", secret.len()),
        Material::Rsa(pk) => format!("RSA {}", pk.modulus_len() * 8),
        Material::P256(_) => "EC P-256".to_owned(),
        Material::P384(_) => "EC P-384".to_owned(),
        Material::P521(_) => "EC P-521".to_owned(),
        Material::Ed25519(_) => "OKP Ed25519".to_owned(),
    }
}

pub fn location(l: &Location) -> Value {
    match l {
        Location::Header { name, prefix } => json!({"header": name, "prefix": prefix}),
        Location::Param(n) => json!({"param": n}),
        Location::Cookie(n) => json!({"cookie": n}),
    }
}

pub fn location_text(l: &Location) -> String {
    match l {
        Location::Header { name, prefix } if !prefix.is_empty() => format!("header {name} (prefix {prefix:?})"),
        Location::Header { name, .. } => format!("header {name}"),
        Location::Param(n) => format!("query parameter {n}"),
        Location::Cookie(n) => format!("cookie {n}"),
    }
}

pub fn provider_locations<'c>(cfg: &'c Config, p: &Provider) -> Vec<&'c Location> {
    p.locations.iter().filter_map(|i| cfg.locations.get(*i)).collect()
}

pub fn to_json(cfg: &Config) -> Value {
    let providers: Vec<Value> = cfg
        .providers
        .iter()
        .map(|p| {
            let keys: Vec<Value> = p
                .keys
                .iter()
                .map(|k| json!({"kid": k.kid, "type": key_type(k), "algorithms": algs(k.algs.intersect(p.algorithms))}))
                .collect();
            json!({
                "name": p.name,
                "issuer": p.issuer,
                "audiences": p.audiences,
                "algorithms": algs(p.algorithms),
                "keys": keys,
                "locations": provider_locations(cfg, p).into_iter().map(location).collect::<Vec<_>>(),
                "forwardOriginalToken": p.forward_original_token,
                "outputPayloadToHeader": p.output_payload_to_header,
                "outputClaimToHeaders": p.output_claim_to_headers.iter()
                    .map(|c| json!({"header": c.header, "claim": c.claim.join(".")}))
                    .collect::<Vec<_>>(),
                "clockSkewSeconds": p.clock_skew_seconds,
                "maxLifetimeSeconds": p.max_lifetime_seconds,
                "requireExpiration": p.require_expiration,
            })
        })
        .collect();
    json!({
        "requirement": requirement_name(cfg.requirement),
        "realm": cfg.realm,
        "maxTokenBytes": cfg.max_token_bytes,
        "dryRun": cfg.dry_run,
        "providers": providers,
    })
}

pub fn to_text(cfg: &Config) -> String {
    let mut out = format!(
        "  requirement {}, realm {:?}, maxTokenBytes {}{}\n",
        requirement_name(cfg.requirement),
        cfg.realm,
        cfg.max_token_bytes,
        if cfg.dry_run {
            ", DRY RUN (nothing is refused)"
        } else {
            ""
        }
    );
    for p in &cfg.providers {
        out.push_str(&format!("  provider {} (issuer {})\n", p.name, p.issuer));
        if p.audiences.is_empty() {
            out.push_str("    audiences: not checked\n");
        } else {
            out.push_str(&format!("    audiences: {}\n", p.audiences.join(", ")));
        }
        let keys: Vec<String> = p
            .keys
            .iter()
            .map(|k| {
                format!(
                    "{} {} [{}]",
                    k.kid.as_deref().unwrap_or("(no kid)"),
                    key_type(k),
                    algs(k.algs.intersect(p.algorithms)).join(" ")
                )
            })
            .collect();
        if keys.is_empty() {
            out.push_str("    keys: fetched at run time (jwksUri, or OpenID Connect discovery of the issuer)\n");
        } else {
            out.push_str(&format!("    keys: {}\n", keys.join("; ")));
        }
        let locs: Vec<String> = provider_locations(cfg, p).into_iter().map(location_text).collect();
        out.push_str(&format!("    token from: {}\n", locs.join(", ")));
        let mut upstream = vec![if p.forward_original_token {
            "token forwarded".to_owned()
        } else {
            "token stripped".to_owned()
        }];
        if let Some(h) = &p.output_payload_to_header {
            upstream.push(format!("payload to {h}"));
        }
        for c in &p.output_claim_to_headers {
            upstream.push(format!("{} to {}", c.claim.join("."), c.header));
        }
        out.push_str(&format!("    upstream: {}\n", upstream.join(", ")));
        let lifetime = match p.max_lifetime_seconds {
            Some(s) => format!(", max lifetime {s}s"),
            None => String::new(),
        };
        out.push_str(&format!(
            "    time: clock skew {}s, exp {}{}\n",
            p.clock_skew_seconds,
            if p.require_expiration { "required" } else { "optional" },
            lifetime
        ));
    }
    out
}

//! UTC calendar dates for people: `YYYY-MM-DDTHH:MM:SSZ` to and from Unix seconds
//! (proleptic Gregorian, H. Hinnant's days-from-civil algorithms).

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `--at`: Unix seconds, or `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse(s: &str) -> Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map_err(|_| format!("{s:?} is out of range"));
    }
    let bad = || format!("{s:?} is neither Unix seconds nor YYYY-MM-DDTHH:MM:SSZ");
    let body = s.strip_suffix('Z').ok_or_else(bad)?;
    let (date, clock) = body.split_once('T').ok_or_else(bad)?;
    let num = |part: Option<&str>, lo: i64, hi: i64| -> Result<i64, String> {
        let p = part.ok_or_else(bad)?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = p.parse().map_err(|_| bad())?;
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next(), 1970, 9999)?, num(d.next(), 1, 12)?, num(d.next(), 1, 31)?);
    let mut c = clock.split(':');
    let (hh, mm, ss) = (num(c.next(), 0, 23)?, num(c.next(), 0, 59)?, num(c.next(), 0, 60)?);
    if d.next().is_some() || c.next().is_some() {
        return Err(bad());
    }
    let secs = days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).map_err(|_| bad())
}

/// Unix seconds (possibly fractional, possibly out of range) as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format(secs: f64) -> String {
    if !secs.is_finite() || !(0.0..253_402_300_800.0).contains(&secs) {
        return "out of range".to_owned();
    }
    let total = secs.floor() as i64;
    let (days, rem) = (total.div_euclid(86_400), total.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A duration in seconds for people: `2h 5m 3s`.
pub fn span(secs: f64) -> String {
    let s = secs.abs().round() as u64;
    let (d, h, m, r) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if r > 0 || parts.is_empty() {
        parts.push(format!("{r}s"));
    }
    parts.join(" ")
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

//! Request URLs: splitting path and query, percent-decoding, and reading DHIS2 parameters.

/// Decodes `%XX` escapes and `+` (as space) of a query component. Invalid escapes are kept
/// as they are; invalid UTF-8 is replaced.
pub fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a query component (RFC 3986 unreserved characters stay as they are).
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b',' | b'*' | b'[' | b']' | b'!')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A parsed request target: the path (decoded) and the query parameters in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// Path without query or fragment.
    pub path: String,
    /// Query parameters, decoded, in order (repeated names kept).
    pub params: Vec<(String, String)>,
}

impl Target {
    /// Parses an absolute URL (`http://host/path?query`) or a path with query.
    pub fn parse(url: &str) -> Self {
        let without_fragment = url.split('#').next().unwrap_or_default();
        let rest = match without_fragment.find("://") {
            Some(i) => {
                let after = &without_fragment[i + 3..];
                after.find('/').map(|j| &after[j..]).unwrap_or("/")
            }
            None => without_fragment,
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Self { path: percent_decode(path), params }
    }

    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a parameter.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.params.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// A boolean parameter (`true`/`false`), absent = None.
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| v.eq_ignore_ascii_case("true"))
    }

    /// The path relative to `base_path` (e.g. `/api`), without a leading slash, or None when
    /// the path is not under it.
    pub fn relative_to(&self, base_path: &str) -> Option<&str> {
        let base = base_path.trim_end_matches('/');
        let rest = self.path.strip_prefix(base)?;
        if rest.is_empty() {
            Some("")
        } else {
            rest.strip_prefix('/')
        }
    }
}

/// The path part of an absolute API base URL (`http://h:1/dhis/api` -> `/dhis/api`).
pub fn base_path(api_base: &str) -> String {
    Target::parse(api_base).path.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_decodes() {
        let t = Target::parse("http://127.0.0.1:8080/api/trackedEntityInstances/query.json?ou=OuBaniNaim1&attribute=AtFirstNam1:LIKE:fat%20ima&attribute=x&order=created%3Adesc&q=a+b#frag");
        assert_eq!(t.path, "/api/trackedEntityInstances/query.json");
        assert_eq!(t.get("ou"), Some("OuBaniNaim1"));
        assert_eq!(t.all("attribute"), vec!["AtFirstNam1:LIKE:fat ima", "x"]);
        assert_eq!(t.get("order"), Some("created:desc"));
        assert_eq!(t.get("q"), Some("a b"));
        assert_eq!(t.relative_to("/api"), Some("trackedEntityInstances/query.json"));
        assert_eq!(t.relative_to("/apix"), None);
        assert_eq!(Target::parse("/api/me").relative_to("/api"), Some("me"));
    }

    #[test]
    fn decoding_never_panics_on_bad_escapes() {
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }

    #[test]
    fn encode_round_trips() {
        let s = "فاطمة & co/=?";
        assert_eq!(percent_decode(&percent_encode(s)), s);
        assert_eq!(base_path("http://h:1/dhis/api/"), "/dhis/api");
    }
}

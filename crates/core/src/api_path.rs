//! Paths under the API base: the one reader of a path's API version segment and `.json`
//! suffix, for reads and writes alike.

/// A path segment without its `.json` suffix (`events.json` -> `events`).
pub fn strip_json(segment: &str) -> &str {
    segment.strip_suffix(".json").unwrap_or(segment)
}

/// A path relative to the API base without its API version segment: `40/me` -> `me`,
/// `41` -> ``, `me` -> `me`. DHIS2 serves `/api/{version}/…` (versions 28 to 42 today) as
/// `/api/…`; any first segment of exactly two digits is taken as a version, so that later
/// versions are too. Every decision about a read starts from this path.
pub fn unversioned(relative: &str) -> &str {
    let (first, rest) = relative.split_once('/').unwrap_or((relative, ""));
    if first.len() == 2 && first.bytes().all(|b| b.is_ascii_digit()) {
        rest
    } else {
        relative
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_segment_is_two_digits_first() {
        assert_eq!(unversioned("40/me"), "me");
        assert_eq!(unversioned("28/programs.json"), "programs.json");
        assert_eq!(unversioned("41"), "");
        assert_eq!(unversioned("42/"), "");
        assert_eq!(unversioned("me"), "me");
        assert_eq!(unversioned("me/40"), "me/40");
        assert_eq!(unversioned("4/me"), "4/me");
        assert_eq!(unversioned("400/me"), "400/me");
        assert_eq!(unversioned("4a/me"), "4a/me");
        assert_eq!(unversioned(""), "");
    }

    #[test]
    fn the_json_suffix_is_stripped_once() {
        assert_eq!(strip_json("events.json"), "events");
        assert_eq!(strip_json("events"), "events");
        assert_eq!(strip_json("a.json.json"), "a.json");
        assert_eq!(strip_json(".json"), "");
    }
}

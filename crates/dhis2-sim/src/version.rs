//! The DHIS2 server version the simulator pretends to be (`--version`).
//!
//! Response shapes differ between versions (see docs/dhis2-api.md); handlers ask this type
//! instead of comparing strings.

use std::{fmt, str::FromStr};

/// The oldest API version a path may name (`/api/28/...`). Assumed, not checked against
/// dhis2-core's `ApiVersion` list: the clients this simulator serves name the server's own.
pub const OLDEST_API_VERSION: u32 = 28;

/// A DHIS2 version `2.<minor>.<patch>`; the simulator supports minors 39 to 42.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Minor version: 39, 40, 41 or 42.
    pub minor: u32,
    /// Patch version; 0 when not given.
    pub patch: u32,
}

impl ServerVersion {
    /// Oldest supported minor version.
    pub const MIN_MINOR: u32 = 39;
    /// Newest supported minor version.
    pub const MAX_MINOR: u32 = 42;

    /// Version 2.`minor`.0.
    pub const fn new(minor: u32) -> Self {
        Self { minor, patch: 0 }
    }

    /// `/api/me` still carries `userCredentials` (removed in 2.42).
    pub fn has_user_credentials(&self) -> bool {
        self.minor <= 41
    }

    /// Reads of dataStore entries are checked against their sharing: not in 2.37.0–2.39.4 and
    /// 2.40.0–2.40.2, but in 2.36, 2.39.5+, 2.40.3+ and 2.41+ (`DefaultDatastoreService`).
    pub fn enforces_datastore_read_sharing(&self) -> bool {
        match self.minor {
            ..=36 => true,
            37 | 38 => false,
            39 => self.patch >= 5,
            40 => self.patch >= 3,
            _ => true,
        }
    }
}

impl ServerVersion {
    /// `PUT /api/dataStore/{ns}/{key}` creates a missing key (`putEntry`, 201): from 2.38.5,
    /// 2.39.3 and 2.40.1. Before (2.39.0-2.39.2, 2.40.0), `updateKeyJsonValue` answers 404
    /// "Key 'k' not found in namespace 'ns'" and only POST creates.
    pub fn datastore_put_creates(&self) -> bool {
        match self.minor {
            ..=37 => false,
            38 => self.patch >= 5,
            39 => self.patch >= 3,
            40 => self.patch >= 1,
            _ => true,
        }
    }
}

impl Default for ServerVersion {
    fn default() -> Self {
        Self::new(40)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "2.{}.{}", self.minor, self.patch)
    }
}

impl FromStr for ServerVersion {
    type Err = String;

    /// Parses `2.40` or `2.40.3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "unsupported version '{s}': expected 2.{}..2.{} (optionally with a patch, e.g. 2.40.3)",
                Self::MIN_MINOR,
                Self::MAX_MINOR
            )
        };
        let mut parts = s.trim().split('.');
        if parts.next() != Some("2") {
            return Err(bad());
        }
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let patch: u32 = match parts.next() {
            None => 0,
            Some(p) => p.parse().map_err(|_| bad())?,
        };
        if parts.next().is_some() || !(Self::MIN_MINOR..=Self::MAX_MINOR).contains(&minor) {
            return Err(bad());
        }
        Ok(Self { minor, patch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_put_creates_by_version() {
        let v = |s: &str| s.parse::<ServerVersion>().expect("version");
        for (version, creates) in [
            ("2.39.0", false),
            ("2.39.2", false),
            ("2.39.3", true),
            ("2.40.0", false),
            ("2.40.1", true),
            ("2.41.0", true),
            ("2.42.0", true),
        ] {
            assert_eq!(v(version).datastore_put_creates(), creates, "{version}");
        }
        assert!(!ServerVersion { minor: 38, patch: 4 }.datastore_put_creates());
        assert!(ServerVersion { minor: 38, patch: 5 }.datastore_put_creates());
    }

    #[test]
    fn parses_supported_versions() {
        assert_eq!("2.40".parse::<ServerVersion>(), Ok(ServerVersion::new(40)));
        assert_eq!("2.40.3".parse::<ServerVersion>(), Ok(ServerVersion { minor: 40, patch: 3 }));
        assert!("2.38".parse::<ServerVersion>().is_err());
        assert!("2.43".parse::<ServerVersion>().is_err());
        assert!("3.40".parse::<ServerVersion>().is_err());
        assert!("2.40.x".parse::<ServerVersion>().is_err());
        assert!("".parse::<ServerVersion>().is_err());
        assert_eq!(ServerVersion::new(41).to_string(), "2.41.0");
    }

    #[test]
    fn datastore_read_sharing_by_version() {
        let v = |s: &str| s.parse::<ServerVersion>().expect("version");
        for (version, enforced) in
            [("2.39", false), ("2.39.4", false), ("2.39.5", true), ("2.40", false), ("2.40.2", false)]
                .into_iter()
                .chain([("2.40.3", true), ("2.41", true), ("2.42", true)])
        {
            assert_eq!(v(version).enforces_datastore_read_sharing(), enforced, "{version}");
        }
        assert!(ServerVersion { minor: 36, patch: 0 }.enforces_datastore_read_sharing());
        assert!(!ServerVersion { minor: 37, patch: 9 }.enforces_datastore_read_sharing());
    }
}

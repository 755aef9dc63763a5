//! What the logged-in user may see of the clinic copy, by her organisation units, and whether
//! a new user may be handed the clinic's data key at a shift change.
//!
//! The copy on the device holds the clinic of whoever downloaded it, and one data key opens all
//! of it; the rules here keep the app from showing a user more than the server would. Her scope
//! is her capture and search org units and everything below them (the paths come from the
//! clinic metadata). A user whose org units do not cover the clinic (every org unit the copy was
//! downloaded for, or one above it) is refused the handover: the server would not give her these
//! women either.

use crate::{metadata::ClinicMetadata, profile::UserProfile};

/// The org units a user's reads are limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserScope {
    /// Capture and search org units (each with everything below it).
    roots: Vec<String>,
}

impl UserScope {
    /// The scope of `profile`'s capture and search org units.
    pub fn of(profile: &UserProfile) -> Self {
        let mut roots: Vec<String> = profile
            .organisation_units
            .iter()
            .chain(&profile.tei_search_organisation_units)
            .map(|o| o.id.clone())
            .filter(|id| !id.is_empty())
            .collect();
        roots.sort_unstable();
        roots.dedup();
        Self { roots }
    }

    /// The org units this scope starts from.
    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    /// True when `org_unit` is one of the roots or lies below one (by its path in `meta`).
    pub fn sees(&self, org_unit: &str, meta: &ClinicMetadata) -> bool {
        let path = meta.org_units.get(org_unit).map(|o| o.path.as_str()).filter(|p| !p.is_empty());
        let is_root = |part: &str| !part.is_empty() && self.roots.iter().any(|root| root == part);
        match path {
            Some(path) => path.split('/').any(is_root),
            None => is_root(org_unit),
        }
    }

    /// True when every org unit the clinic copy was downloaded for is in this scope (a copy
    /// without metadata has no clinic yet: covered).
    pub fn covers_clinic(&self, meta: &ClinicMetadata) -> bool {
        meta.capture_org_units.iter().all(|clinic_root| self.sees(clinic_root, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{metadata::OrgUnitInfo, profile::OrgUnitRef};

    fn meta() -> ClinicMetadata {
        let mut meta = ClinicMetadata { capture_org_units: vec!["Clinic".into()], ..Default::default() };
        for (id, path) in [
            ("Hebron", "/Pal/Hebron"),
            ("Clinic", "/Pal/Hebron/Clinic"),
            ("Ward", "/Pal/Hebron/Clinic/Ward"),
            ("Other", "/Pal/Nablus/Other"),
        ] {
            meta.org_units.insert(id.into(), OrgUnitInfo { id: id.into(), path: path.into(), display_name: id.into() });
        }
        meta
    }

    fn user(capture: &[&str], search: &[&str]) -> UserScope {
        let units = |ids: &[&str]| ids.iter().map(|id| OrgUnitRef { id: (*id).into(), display_name: None }).collect();
        UserScope::of(&UserProfile {
            id: "u".into(),
            username: "u".into(),
            display_name: "u".into(),
            organisation_units: units(capture),
            tei_search_organisation_units: units(search),
            authorities: vec![],
        })
    }

    #[test]
    fn a_user_sees_her_org_units_and_below_only() {
        let meta = meta();
        let nurse = user(&["Clinic"], &[]);
        assert!(nurse.sees("Clinic", &meta));
        assert!(nurse.sees("Ward", &meta));
        assert!(!nurse.sees("Hebron", &meta), "the district above her clinic is not hers");
        assert!(!nurse.sees("Other", &meta));
        assert!(!nurse.sees("Unknown", &meta), "an org unit of unknown path is seen only when it is a root");
        assert!(user(&["Unknown"], &[]).sees("Unknown", &meta));
        assert!(user(&[], &["Hebron"]).sees("Ward", &meta), "search org units count");
    }

    #[test]
    fn the_clinic_is_covered_by_its_own_org_unit_or_one_above() {
        let meta = meta();
        assert!(user(&["Clinic"], &[]).covers_clinic(&meta));
        assert!(user(&["Other"], &["Hebron"]).covers_clinic(&meta));
        assert!(!user(&["Ward"], &[]).covers_clinic(&meta), "a ward of the clinic is not the whole clinic");
        assert!(!user(&["Other"], &[]).covers_clinic(&meta));
        assert!(!user(&[], &[]).covers_clinic(&meta));
        assert!(user(&[], &[]).covers_clinic(&ClinicMetadata::default()), "no copy yet: nothing to cover");
    }
}

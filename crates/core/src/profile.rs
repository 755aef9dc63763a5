//! The user profile kept (sealed) in the register: what `/api/me` told us at the last online
//! login, so an offline login can show who is logged in and for which clinic.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// An organisation unit the user is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgUnitRef {
    /// DHIS2 UID.
    pub id: String,
    /// Display name (may be absent if the server did not send it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A user's profile as the JS API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    /// DHIS2 user UID.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Name to show.
    pub display_name: String,
    /// Capture org units.
    #[serde(default)]
    pub organisation_units: Vec<OrgUnitRef>,
    /// Search org units.
    #[serde(default)]
    pub tei_search_organisation_units: Vec<OrgUnitRef>,
    /// Authorities (e.g. `ALL` for superusers).
    #[serde(default)]
    pub authorities: Vec<String>,
}

/// The `fields` selection sent with `GET /api/me` so one answer fills a [`UserProfile`].
pub const ME_FIELDS: &str = "id,username,displayName,userCredentials[username],authorities,\
organisationUnits[id,displayName],teiSearchOrganisationUnits[id,displayName]";

impl UserProfile {
    /// Parses a `/api/me` body. `username` is taken from the body (top level, or
    /// `userCredentials.username` on servers before 2.42 that omit it), falling back to the
    /// name typed at login.
    pub fn from_me_json(body: &[u8], typed_username: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| CoreError::BadResponse(format!("/api/me is not JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| CoreError::BadResponse("/api/me is not an object".into()))?;
        let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
        let id = text(obj.get("id")).ok_or_else(|| CoreError::BadResponse("/api/me has no id".into()))?;
        let username = text(obj.get("username"))
            .or_else(|| text(obj.get("userCredentials").and_then(|c| c.get("username"))))
            .unwrap_or_else(|| typed_username.to_string());
        let display_name = text(obj.get("displayName")).unwrap_or_else(|| username.clone());
        let units = |key: &str| -> Vec<OrgUnitRef> {
            obj.get(key)
                .and_then(|v| v.as_array())
                .map(|list| {
                    list.iter()
                        .filter_map(|ou| {
                            Some(OrgUnitRef {
                                id: text(ou.get("id"))?,
                                display_name: text(ou.get("displayName")).or_else(|| text(ou.get("name"))),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let authorities = obj
            .get("authorities")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        Ok(Self {
            id,
            username,
            display_name,
            organisation_units: units("organisationUnits"),
            tei_search_organisation_units: units("teiSearchOrganisationUnits"),
            authorities,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_2_40_me_with_user_credentials() {
        let body = br#"{"id":"xE7jOejl9FI","displayName":"Amal Haddad","userCredentials":{"username":"nurse1"},
            "organisationUnits":[{"id":"DiszpKrYNg8","displayName":"Bani Naim Clinic"}],"authorities":["F_TRACKED_ENTITY_INSTANCE_ADD"]}"#;
        let p = UserProfile::from_me_json(body, "typed").unwrap();
        assert_eq!(p.username, "nurse1");
        assert_eq!(p.display_name, "Amal Haddad");
        assert_eq!(p.organisation_units[0].display_name.as_deref(), Some("Bani Naim Clinic"));
    }

    #[test]
    fn refuses_non_json_and_missing_id() {
        assert_eq!(UserProfile::from_me_json(b"<html>", "u").unwrap_err().code(), "BAD_RESPONSE");
        assert_eq!(UserProfile::from_me_json(b"{}", "u").unwrap_err().code(), "BAD_RESPONSE");
        assert_eq!(UserProfile::from_me_json(b"[1]", "u").unwrap_err().code(), "BAD_RESPONSE");
    }
}

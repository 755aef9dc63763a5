//! Server escrow of the data key: so that a user's first login on a device whose vault is
//! locked (nobody logged in to hand the key over) can still join the clinic's data. The key is
//! kept in the DHIS2 dataStore (`?encrypt=true`), in one entry per vault, shared read-only with
//! the users or user groups the clinic names, never public. Servers whose dataStore does not
//! enforce read sharing (2.37.0-2.39.4, 2.40.0-2.40.2; dhis2-api.md section 6) are refused:
//! there, every user could read the entry.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    crypto::SecretKey,
    engine::Engine,
    error::{CoreError, Result},
    http::{HttpClient, HttpRequest},
    kdf::PasswordKdf,
    random::RandomSource,
    store::KvStore,
};

/// dataStore namespace of escrow entries.
pub const ESCROW_NAMESPACE: &str = "tracker-offline-escrow";

/// Who may read the escrowed key.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EscrowSharing {
    /// DHIS2 user UIDs.
    #[serde(default)]
    pub users: Vec<String>,
    /// DHIS2 user group UIDs.
    #[serde(default)]
    pub user_groups: Vec<String>,
}

/// True if a server of this version checks read sharing of dataStore entries.
pub fn enforces_read_sharing(version: &str) -> bool {
    let parts: Vec<u32> = version.split(['.', '-']).take(3).map(|p| p.parse().unwrap_or(0)).collect();
    let (minor, patch) = (parts.get(1).copied().unwrap_or(0), parts.get(2).copied().unwrap_or(0));
    match minor {
        0..=36 => minor == 36,
        37 | 38 => false,
        39 => patch >= 5,
        40 => patch >= 3,
        _ => true,
    }
}

fn escrow_key(vault_id: &str) -> String {
    format!("vault-{vault_id}")
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    async fn send_json(&self, method: &str, url: String, body: Option<Value>) -> Result<(u16, Value)> {
        let mut headers = self.auth_headers();
        headers.push(("Content-Type".into(), "application/json".into()));
        let request = HttpRequest {
            opens_session: false,
            method: method.into(),
            url,
            headers,
            body: body.map(|b| b.to_string().into_bytes()),
        };
        let r = self.http.send(request).await.map_err(|e| CoreError::ServerUnreachable(e.to_string()))?;
        Ok((r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null)))
    }

    async fn server_version(&self) -> Result<String> {
        let info = self.get_json(&format!("{}/system/info", self.config.api_base)).await?;
        Ok(info.get("version").and_then(Value::as_str).unwrap_or_default().to_string())
    }

    /// Puts the open session's data key in escrow on the server, readable only by `sharing`.
    /// Needs an online session. Refused (`ESCROW_UNSAFE`) where the server does not enforce
    /// dataStore read sharing.
    pub async fn enable_escrow(&self, sharing: &EscrowSharing) -> Result<()> {
        if sharing.users.is_empty() && sharing.user_groups.is_empty() {
            return Err(CoreError::BadInput("escrow needs at least one user or user group to share with".into()));
        }
        let version = self.server_version().await?;
        if !enforces_read_sharing(&version) {
            return Err(CoreError::EscrowUnsafe(version));
        }
        let vault_id = self.vault.vault_id().await?.ok_or(CoreError::VaultLocked)?;
        let key = self.vault.export_data_key()?;
        let api = &self.config.api_base;
        let url = format!("{api}/dataStore/{ESCROW_NAMESPACE}/{}?encrypt=true", escrow_key(&vault_id));
        let body = json!({"format": 1, "vaultId": vault_id, "dataKey": B64.encode(&key[..])});
        let (status, answer) = self.send_json("PUT", url, Some(body)).await?;
        if !(200..300).contains(&status) {
            return Err(CoreError::BadResponse(format!("escrow not stored: HTTP {status} {answer}")));
        }
        let (status, meta) = self
            .send_json("GET", format!("{api}/dataStore/{ESCROW_NAMESPACE}/{}/metaData", escrow_key(&vault_id)), None)
            .await?;
        let id = meta
            .get("id")
            .and_then(Value::as_str)
            .filter(|_| status == 200)
            .ok_or_else(|| CoreError::BadResponse(format!("escrow entry has no id: HTTP {status}")))?;
        let access = |ids: &[String]| ids.iter().map(|id| json!({"id": id, "access": "r-------"})).collect::<Vec<_>>();
        let sharing_body = json!({"object": {"publicAccess": "--------", "userAccesses": access(&sharing.users),
            "userGroupAccesses": access(&sharing.user_groups)}});
        let (status, answer) =
            self.send_json("POST", format!("{api}/sharing?type=dataStore&id={id}"), Some(sharing_body)).await?;
        if !(200..300).contains(&status) {
            // Never leave a readable key behind.
            let _ = self
                .send_json("DELETE", format!("{api}/dataStore/{ESCROW_NAMESPACE}/{}", escrow_key(&vault_id)), None)
                .await;
            return Err(CoreError::BadResponse(format!("escrow sharing refused: HTTP {status} {answer}")));
        }
        Ok(())
    }

    /// The escrowed data key of this device's vault, read with the credentials of the user
    /// logging in. None when there is none, or she may not read it, or the server is unsafe.
    pub(crate) async fn fetch_escrowed_key(&self, username: &str, password: &str) -> Result<Option<SecretKey>> {
        let Some(vault_id) = self.vault.vault_id().await? else { return Ok(None) };
        if !enforces_read_sharing(&self.server_version_with(username, password).await?) {
            return Ok(None);
        }
        let url = format!("{}/dataStore/{ESCROW_NAMESPACE}/{}", self.config.api_base, escrow_key(&vault_id));
        let token = B64.encode(format!("{username}:{password}"));
        let request = HttpRequest {
            opens_session: false,
            method: "GET".into(),
            url,
            headers: vec![
                ("Authorization".into(), format!("Basic {token}")),
                ("X-Requested-With".into(), "XMLHttpRequest".into()),
            ],
            body: None,
        };
        let r = self.http.send(request).await.map_err(|e| CoreError::ServerUnreachable(e.to_string()))?;
        if r.status != 200 {
            return Ok(None);
        }
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| CoreError::BadResponse(format!("escrow: {e}")))?;
        if v.get("vaultId").and_then(Value::as_str) != Some(vault_id.as_str()) {
            return Ok(None);
        }
        let bytes = v
            .get("dataKey")
            .and_then(Value::as_str)
            .and_then(|k| B64.decode(k).ok())
            .ok_or_else(|| CoreError::BadResponse("escrow entry without a key".into()))?;
        SecretKey::from_slice(&bytes).map(Some)
    }

    async fn server_version_with(&self, username: &str, password: &str) -> Result<String> {
        let token = B64.encode(format!("{username}:{password}"));
        let request = HttpRequest {
            opens_session: false,
            method: "GET".into(),
            url: format!("{}/system/info", self.config.api_base),
            headers: vec![
                ("Authorization".into(), format!("Basic {token}")),
                ("X-Requested-With".into(), "XMLHttpRequest".into()),
            ],
            body: None,
        };
        let r = self.http.send(request).await.map_err(|e| CoreError::ServerUnreachable(e.to_string()))?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        Ok(v.get("version").and_then(Value::as_str).unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_sharing_by_version() {
        for v in ["2.36.0", "2.39.5", "2.40.3", "2.41.0", "2.42.1", "2.43"] {
            assert!(enforces_read_sharing(v), "{v}");
        }
        for v in ["2.37.0", "2.38.4", "2.39.4", "2.40.0", "2.40.2", "", "garbage"] {
            assert!(!enforces_read_sharing(v), "{v}");
        }
    }
}

//! Server escrow of the data key: so that a user's first login on a device whose vault is
//! locked (nobody logged in to hand the key over) can still join the clinic's data. The key is
//! kept in the DHIS2 dataStore (`?encrypt=true`), in one entry per vault, shared read-only with
//! the users or user groups the clinic names, never public. Servers whose dataStore does not
//! enforce read sharing (2.37.0-2.39.4, 2.40.0-2.40.2; dhis2-api.md section 6) are refused:
//! there, every user could read the entry.
//!
//! The key is stored as it is (base64), not wrapped: whatever would wrap it, the users meant to
//! read it must obtain through the server, under the same sharing, so a wrapping key would be
//! exactly as readable as the key (and the data key opens nothing without the device's
//! storage, which would hold any device-side wrapping key too). What protects it is that no
//! one else can ever read the entry while it holds the key: DHIS2 creates dataStore keys public
//! read/write and takes no sharing at creation, so the entry is created empty, restricted,
//! checked, and only then given the key ([`Engine::enable_escrow`]).

use std::borrow::Cow;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::{Zeroize, Zeroizing};

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

/// How far a round of escrow got, for its cleanup.
#[derive(Default)]
struct Progress {
    /// The create was sent (it may have been applied even if no answer came back).
    sent_create: bool,
    /// The entry turned out to be someone else's: not ours to delete.
    owned_by_other: bool,
}

/// The owner of a dataStore entry, from its `metaData` (`sharing.owner`, else `createdBy`).
fn entry_owner(meta: &Value) -> Option<&str> {
    meta.pointer("/sharing/owner")
        .and_then(Value::as_str)
        .or_else(|| meta.pointer("/createdBy/id").and_then(Value::as_str))
        .or_else(|| meta.pointer("/user/id").and_then(Value::as_str))
}

/// Whether a DHIS2 access string grants metadata read (`r` first) or write (`w` second).
fn grants(access: &str, what: u8) -> bool {
    let at = if what == b'w' { 1 } else { 0 };
    access.as_bytes().get(at) == Some(&what)
}

/// Checks the sharing read back from an entry's `metaData`: owned by `me`, no public or
/// external access, and nobody but the named users and groups, none of them with write
/// access; at least one of them kept (DHIS2 silently drops ids it does not know).
fn check_restricted(meta: &Value, me: &str, wanted: &EscrowSharing) -> Result<()> {
    let refuse = |why: &str| Err(CoreError::BadResponse(format!("escrow entry sharing not as set: {why}")));
    let Some(sharing) = meta.get("sharing") else { return refuse("no sharing in its metaData") };
    if entry_owner(meta) != Some(me) {
        return refuse("another owner");
    }
    let public = sharing.get("public").and_then(Value::as_str).unwrap_or("rw------");
    if grants(public, b'r') || grants(public, b'w') {
        return refuse("public access");
    }
    if sharing.get("external").and_then(Value::as_bool).unwrap_or(false) {
        return refuse("external access");
    }
    let mut readers = 0;
    for (field, allowed) in [("users", &wanted.users), ("userGroups", &wanted.user_groups)] {
        let Some(map) = sharing.get(field).and_then(Value::as_object) else { continue };
        for (id, access) in map {
            let access = access.get("access").and_then(Value::as_str).unwrap_or("rw------");
            if !allowed.contains(id) {
                return refuse(&format!("{field} {id} not asked for"));
            }
            if grants(access, b'w') {
                return refuse(&format!("{field} {id} may write"));
            }
            readers += usize::from(grants(access, b'r'));
        }
    }
    if readers == 0 {
        return refuse("none of the users or groups asked for can read it (unknown ids?)");
    }
    Ok(())
}

/// An escrow entry as read back: the key borrowed from the answer's bytes where it can be.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EscrowEntry<'a> {
    #[serde(default)]
    vault_id: Option<String>,
    #[serde(default, borrow)]
    data_key: Option<Cow<'a, str>>,
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    async fn send_json(&self, method: &str, url: String, body: Option<Value>) -> Result<(u16, Value)> {
        self.send_bytes(method, url, body.map(|b| b.to_string().into_bytes())).await
    }

    /// [`Self::send_json`] with the body as bytes (zeroized with the request).
    async fn send_bytes(&self, method: &str, url: String, body: Option<Vec<u8>>) -> Result<(u16, Value)> {
        let mut headers = self.auth_headers();
        headers.push(("Content-Type".into(), "application/json".into()));
        let request = HttpRequest { opens_session: false, method: method.into(), url, headers, body };
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
    ///
    /// DHIS2 creates every dataStore key public read/write and no dataStore request carries
    /// sharing (2.36-2.42), so the key never travels with a create: the entry is created by
    /// POST holding no key material, its sharing is set, read back and checked (owner: the
    /// user enabling escrow; public: none; readers: only those named, read-only), and only
    /// then is the key written into it by PUT. Every failure deletes the entry (when the
    /// network lets us); one left behind by a network failure holds no key.
    pub async fn enable_escrow(&self, sharing: &EscrowSharing) -> Result<()> {
        if sharing.users.is_empty() && sharing.user_groups.is_empty() {
            return Err(CoreError::BadInput("escrow needs at least one user or user group to share with".into()));
        }
        let version = self.server_version().await?;
        if !enforces_read_sharing(&version) {
            return Err(CoreError::EscrowUnsafe(version));
        }
        let vault_id = self.vault.vault_id().await?.ok_or(CoreError::VaultLocked)?;
        let me = self.current_user_id().await?;
        let entry = format!("{}/dataStore/{ESCROW_NAMESPACE}/{}", self.config.api_base, escrow_key(&vault_id));
        // A second round only if the entry vanished between its check and the key's write.
        for _ in 0..2 {
            let mut progress = Progress::default();
            match self.escrow_round(&entry, &vault_id, &me, sharing, &mut progress).await {
                Ok(true) => return Ok(()),
                Ok(false) => continue,
                Err(e) => {
                    if progress.sent_create && !progress.owned_by_other {
                        // Never leave the entry behind; if the network is gone, what stays
                        // holds no key, or is already restricted.
                        let _ = self.send_json("DELETE", entry.clone(), None).await;
                    }
                    return Err(e);
                }
            }
        }
        Err(CoreError::BadResponse("escrow entry deleted while it was being written, twice".into()))
    }

    /// One round of [`Self::enable_escrow`]: Ok(false) if the entry was gone when the key was
    /// written (nothing of the write is left: a 404, or a new entry deleted at once).
    async fn escrow_round(
        &self,
        entry: &str,
        vault_id: &str,
        me: &str,
        sharing: &EscrowSharing,
        progress: &mut Progress,
    ) -> Result<bool> {
        // 1. The entry, without the key: POST creates (a PUT of a missing key is a 404 on
        //    DHIS2 2.39.0-2.39.2 and 2.40.0); 409 if it exists (an earlier escrow, or one
        //    interrupted), which is then used if it is ours.
        progress.sent_create = true;
        let placeholder = json!({"format": 1, "vaultId": vault_id, "pending": true});
        let (status, answer) = self.send_json("POST", format!("{entry}?encrypt=true"), Some(placeholder)).await?;
        if status != 201 && status != 409 {
            return Err(CoreError::BadResponse(format!("escrow entry not created: HTTP {status} {answer}")));
        }
        let id = self.escrow_entry_owned_by(entry, me, progress).await?;
        // 2. Its sharing: nobody but the owner and the named readers, read-only.
        let access = |ids: &[String]| ids.iter().map(|id| json!({"id": id, "access": "r-------"})).collect::<Vec<_>>();
        let sharing_body = json!({"object": {"publicAccess": "--------", "externalAccess": false,
            "userAccesses": access(&sharing.users), "userGroupAccesses": access(&sharing.user_groups)}});
        let api = &self.config.api_base;
        let (status, answer) =
            self.send_json("POST", format!("{api}/sharing?type=dataStore&id={id}"), Some(sharing_body)).await?;
        if !(200..300).contains(&status) {
            return Err(CoreError::BadResponse(format!("escrow sharing refused: HTTP {status} {answer}")));
        }
        // 3. Read back: the same entry, still ours, shared as asked and no wider.
        let meta = self.escrow_metadata(entry).await?;
        if meta.get("id").and_then(Value::as_str) != Some(id.as_str()) {
            return Err(CoreError::BadResponse("escrow entry replaced while its sharing was set".into()));
        }
        check_restricted(&meta, me, sharing)?;
        // 4. Only now the key, into that entry. PUT updates it; a 404 (older DHIS2) or a 201
        //    (newer DHIS2 creating it anew, public) means the entry was deleted meanwhile.
        let body = self.escrow_body(vault_id)?;
        let (status, answer) = self.send_bytes("PUT", format!("{entry}?encrypt=true"), Some(body)).await?;
        match status {
            200 | 204 => Ok(true),
            404 => Ok(false),
            201 => {
                // Created public with the key in it: delete it at once, then start again.
                let (status, _) = self.send_json("DELETE", entry.to_string(), None).await?;
                if !(200..300).contains(&status) && status != 404 {
                    return Err(CoreError::BadResponse(format!("escrow entry could not be deleted: HTTP {status}")));
                }
                Ok(false)
            }
            _ => Err(CoreError::BadResponse(format!("escrow not stored: HTTP {status} {answer}"))),
        }
    }

    /// `{"format":1,"vaultId":..,"dataKey":"<base64>"}`, built in one buffer reserved up front
    /// (no copy of the key left behind by a growing string or a JSON value).
    fn escrow_body(&self, vault_id: &str) -> Result<Vec<u8>> {
        let key = self.vault.export_data_key()?;
        let vault_id = serde_json::to_string(vault_id).map_err(|e| CoreError::BadInput(e.to_string()))?;
        let mut body = Zeroizing::new(String::with_capacity(64 + vault_id.len() + 44));
        body.push_str(r#"{"format":1,"vaultId":"#);
        body.push_str(&vault_id);
        body.push_str(r#","dataKey":""#);
        B64.encode_string(&key[..], &mut body);
        body.push_str(r#""}"#);
        Ok(std::mem::take(&mut *body).into_bytes())
    }

    /// The entry's `metaData` (id, owner, sharing).
    async fn escrow_metadata(&self, entry: &str) -> Result<Value> {
        let (status, meta) = self.send_json("GET", format!("{entry}/metaData"), None).await?;
        if status != 200 {
            return Err(CoreError::BadResponse(format!("escrow entry unreadable: HTTP {status} {meta}")));
        }
        Ok(meta)
    }

    /// The entry's id, if `me` owns it (else an error: the key never goes to an entry someone
    /// else owns, as the owner can always read it and change its sharing).
    async fn escrow_entry_owned_by(&self, entry: &str, me: &str, progress: &mut Progress) -> Result<String> {
        let meta = self.escrow_metadata(entry).await?;
        let id = meta
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| CoreError::BadResponse("escrow entry has no id".into()))?;
        if entry_owner(&meta) != Some(me) {
            progress.owned_by_other = true;
            return Err(CoreError::BadResponse(format!(
                "escrow entry {id} belongs to another user ({}): delete it as a superuser first",
                entry_owner(&meta).unwrap_or("unknown")
            )));
        }
        Ok(id.to_string())
    }

    /// The DHIS2 user id of whoever is logged in.
    async fn current_user_id(&self) -> Result<String> {
        if let Some(id) = self.vault.session_info().and_then(|i| i.profile).map(|p| p.id) {
            return Ok(id);
        }
        let me = self.get_json(&format!("{}/me?fields=id", self.config.api_base)).await?;
        me.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| CoreError::BadResponse("/api/me has no id".into()))
    }

    /// The escrowed data key of this device's vault, read with the credentials of the user
    /// logging in. None when there is none, or she may not read it, or the server is unsafe.
    pub(crate) async fn fetch_escrowed_key(&self, username: &str, password: &str) -> Result<Option<SecretKey>> {
        let Some(vault_id) = self.vault.vault_id().await? else { return Ok(None) };
        if !enforces_read_sharing(&self.server_version_with(username, password).await?) {
            return Ok(None);
        }
        let url = format!("{}/dataStore/{ESCROW_NAMESPACE}/{}", self.config.api_base, escrow_key(&vault_id));
        let request = HttpRequest {
            opens_session: false,
            method: "GET".into(),
            url,
            headers: vec![
                crate::http::basic_authorization(username, password),
                ("X-Requested-With".into(), "XMLHttpRequest".into()),
            ],
            body: None,
        };
        let r = self.http.send(request).await.map_err(|e| CoreError::ServerUnreachable(e.to_string()))?;
        if r.status != 200 {
            return Ok(None);
        }
        // The answer holds the key: its bytes are zeroized, and the key is read from them in
        // place (borrowed, not copied into a JSON value).
        let body = Zeroizing::new(r.body);
        let entry: EscrowEntry<'_> =
            serde_json::from_slice(&body).map_err(|e| CoreError::BadResponse(format!("escrow: {e}")))?;
        if entry.vault_id.as_deref() != Some(vault_id.as_str()) {
            return Ok(None);
        }
        // An entry whose setup was interrupted holds no key.
        let Some(key) = entry.data_key else { return Ok(None) };
        let malformed = || CoreError::BadResponse("escrow entry with a malformed key".into());
        let mut bytes = Zeroizing::new(vec![0u8; 48]);
        let len = B64.decode_slice(key.as_bytes(), &mut bytes[..]).map_err(|_| malformed())?;
        if let Cow::Owned(mut copy) = key {
            copy.zeroize();
        }
        SecretKey::from_slice(&bytes[..len]).map(Some)
    }

    async fn server_version_with(&self, username: &str, password: &str) -> Result<String> {
        let request = HttpRequest {
            opens_session: false,
            method: "GET".into(),
            url: format!("{}/system/info", self.config.api_base),
            headers: vec![
                crate::http::basic_authorization(username, password),
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

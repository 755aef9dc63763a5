//! The sealed cache of online answers: which reads are kept (every API read outside the
//! tracker data routes, and the server pages the app reads), under which key and for whom;
//! what is remembered of `me` and of metadata objects across answers; and the answers known
//! without asking (a key never set, working lists never read).
//!
//! # Whose a cached read is
//!
//! Every decision about a read (its route, whether it is cached, under which key, for whom)
//! is taken on its path without the API version segment ([`unversioned`]): DHIS2 answers
//! `/api/40/me` as `/api/me`, and the Capture app always asks with a version. A cached read
//! is kept **per user** (its key names the logged-in user, so a shift change offline never
//! shows the next nurse what the server told the previous one) unless its resource is in
//! [`VAULT_WIDE_API_READS`]: the program metadata every user of the clinic reads alike
//! (programs and their stages, sections, rules, indicators; tracked entity types and
//! attributes; option sets; data elements and category combos; relationship types, constants,
//! org unit levels, legend sets, attributes, schemas), kept once for the vault so a nurse new
//! to the device can open the app offline. Not on the list, so per user: `me` and everything
//! under it, `userSettings`, `userDataStore`, `dataStore` (sharing is per key),
//! `messageConversations`, `organisationUnits` (`userOnly`, `withinUserHierarchy`),
//! `system/info` and `systemSettings` (DHIS2 hides sensitive fields from non-superusers),
//! `apps`, working lists and filters (shared per user), and every resource not named, known
//! or not. `{resource}/orgUnits` of a listed resource is per user too (DHIS2's
//! `programs/orgUnits` answers only the org units of the current user's scope).
//!
//! Keys are the request's method, path without the version and query (without jQuery's
//! cache buster), prefixed with `user:{username}` when per user. A read kept before this rule
//! under a versioned path (`GET /api/40/me?…`, vault-wide) is never looked up again: it
//! simply misses, and the next online answer is kept under the new key.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{
    api_path::{strip_json, unversioned},
    engine::Engine,
    error::{CoreError, Result},
    http::{HttpClient, HttpResponse},
    kdf::PasswordKdf,
    local_answer::{not_found, LOCAL_HEADER},
    params::Target,
    random::RandomSource,
    read_shapes::json_response,
    reads::{route, ReadRoute},
    store::{KvStore, StoreName},
};

/// A response kept in the sealed cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CachedResponse {
    status: u16,
    content_type: String,
    body: crate::register::Bytes,
}

/// Who a cached API read belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// Kept for the logged-in user only (the default).
    User,
    /// Kept once for every user of the vault (metadata of [`VAULT_WIDE_API_READS`]).
    Vault,
}

/// The scope of a cached read by its path relative to the API base, version stripped or
/// not: per user unless its resource is in [`VAULT_WIDE_API_READS`] (and it is not that
/// resource's per-user `orgUnits` association).
pub fn cache_scope(relative: &str) -> CacheScope {
    let mut parts = unversioned(relative).split('/').map(strip_json);
    let resource = parts.next().unwrap_or_default();
    if VAULT_WIDE_API_READS.contains(&resource) && parts.next() != Some("orgUnits") {
        CacheScope::Vault
    } else {
        CacheScope::User
    }
}

/// The answer offline to a read never seen online, where the server's answer is known without
/// asking: a key (or a whole namespace) of the dataStore, userDataStore or user settings that
/// this device never read is taken as unset (404, as the server answers for a key never set
/// or a namespace never used; the entries query `dataStore/{namespace}?fields=…` of an unused
/// namespace is an empty list, as the server answers it; the app then uses its defaults), and
/// potential duplicates are those the server reported (none known), and a user's saved working
/// lists never read on this device are none (the app shows its default working list).
pub(crate) fn offline_default(relative: &str, target: &Target) -> Option<HttpResponse> {
    let parts: Vec<&str> = relative.trim_matches('/').split('/').map(strip_json).collect();
    let mut answer = match parts.as_slice() {
        ["dataStore" | "userDataStore", namespace, key] => {
            not_found(format!("Key '{key}' not found in namespace '{namespace}'"))
        }
        ["dataStore" | "userDataStore", _] if target.get("fields").is_some() => {
            let paging = !target.get("paging").is_some_and(|p| p.eq_ignore_ascii_case("false"));
            let page_size = target.get("pageSize").and_then(|p| p.parse::<usize>().ok()).filter(|n| *n > 0);
            match (target.flag("headless") == Some(true), paging) {
                (true, _) => json_response(&json!([])),
                (false, true) => {
                    json_response(&json!({"pager": {"page": 1, "pageSize": page_size.unwrap_or(50)}, "entries": []}))
                }
                (false, false) => json_response(&json!({"entries": []})),
            }
        }
        ["dataStore" | "userDataStore", namespace] => not_found(format!("Namespace not found: '{namespace}'")),
        ["userSettings", key] => not_found(format!("User setting not found for key: {key}")),
        ["potentialDuplicates"] => json_response(&json!({"potentialDuplicates": []})),
        // A user's saved working lists (shared per user), never read online on this device:
        // none known (the app shows its default list; a failed read shows no list at all).
        [resource @ ("trackedEntityInstanceFilters" | "programStageWorkingLists" | "eventFilters")] => {
            json_response(&crate::metadata_answers::metadata_list(resource, Vec::new(), target))
        }
        _ => return None,
    };
    answer.headers.retain(|(k, _)| k != LOCAL_HEADER.0);
    answer.headers.push((LOCAL_HEADER.0.into(), "default".into()));
    Some(answer)
}

/// API resources (first segment after the version, `.json` stripped) whose cached answers are
/// kept once for the vault and served to any user who logs in on the device: the program
/// metadata the clinic's users share (see the module doc). Every other cached read is kept
/// per user. Add a resource here only when its answer does not depend on who asks.
pub const VAULT_WIDE_API_READS: &[&str] = &[
    "programs",
    "programStages",
    "programStageSections",
    "programSections",
    "programStageDataElements",
    "programTrackedEntityAttributes",
    "programRules",
    "programRuleVariables",
    "programRuleActions",
    "programIndicators",
    "trackedEntityTypes",
    "trackedEntityAttributes",
    "relationshipTypes",
    "optionSets",
    "options",
    "optionGroups",
    "dataElements",
    "categoryCombos",
    "categories",
    "categoryOptionCombos",
    "constants",
    "organisationUnitLevels",
    "legendSets",
    "attributes",
    "schemas",
];

/// Folders of server pages (outside the API) that Tracker Capture reads: the org unit tree,
/// selection actions, header menu and form templates. Not the login/logout pages.
pub(crate) const SERVER_READ_FOLDERS: &[&str] =
    &["dhis-web-commons", "dhis-web-commons-ajax-json", "dhis-web-commons-ajax"];

/// API resources read with a POST: `i18n` (translations of the keys in the body).
pub(crate) const API_READS_BY_POST: &[&str] = &["i18n"];

/// Whether a request outside the tracker data routes is a read the worker answers network
/// first and, offline, from the sealed cache, for the API at `api_path` (`/api`,
/// `/dhis/api`): any GET under the API base, and the server pages Tracker Capture reads
/// outside it (`dhis-web-commons*`, including the org unit tree it fetches with a POST).
pub fn is_server_read(api_path: &str, method: &str, url: &str) -> bool {
    let target = Target::parse(url);
    let get = method.eq_ignore_ascii_case("GET");
    let post = method.eq_ignore_ascii_case("POST");
    if let Some(relative) = target.relative_to(api_path) {
        let first = unversioned(relative).split('/').next().map(strip_json).unwrap_or_default();
        return get || post && API_READS_BY_POST.contains(&first);
    }
    // The selection actions (`ouwt/setorgunit.action`) only touch the server session.
    server_page(&target, &server_root(api_path)).is_some() && (get || post)
}

/// The server root an API path lives under (`/dhis/api` -> `/dhis`, `/api` -> ``).
pub(crate) fn server_root(api_path: &str) -> String {
    api_path.strip_suffix("/api").unwrap_or(api_path).to_string()
}

/// The page of a URL under the server root's `dhis-web-commons*` folders, if it is one.
pub(crate) fn server_page<'t>(target: &'t Target, server_root: &str) -> Option<&'t str> {
    let page = target.relative_to(server_root)?;
    let folder = page.split('/').next().unwrap_or_default();
    SERVER_READ_FOLDERS.contains(&folder).then_some(page)
}

/// Where a cacheable read is kept.
pub(crate) struct CacheSlot {
    /// Record id in the cache store (hashed with the vault's key before it is stored).
    id: String,
    /// Whether a 404 answer is kept too (key-value reads).
    keeps_not_found: bool,
}

/// Cache key of a GET: path and query as sent, without jQuery's cache buster (`_=<time>`).
pub(crate) fn cache_id(target: &Target) -> String {
    let query: Vec<String> = target.params.iter().filter(|(k, _)| k != "_").map(|(k, v)| format!("{k}={v}")).collect();
    format!("GET {}?{}", target.path, query.join("&"))
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    /// Keeps a successful online GET answer, sealed, to serve it offline later. Tracker data
    /// routes are answered from the local copy instead and are not cached.
    pub async fn cache_response(&self, url: &str, status: u16, content_type: &str, body: &[u8]) -> Result<bool> {
        self.cache_read("GET", url, &[], status, content_type, body).await
    }

    /// Keeps an online answer to a read ([`Engine::is_server_read`] or an API GET), sealed,
    /// under the request's method, URL and body (and the user, for per-user reads).
    pub async fn cache_read(
        &self,
        method: &str,
        url: &str,
        request_body: &[u8],
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> Result<bool> {
        let Some(slot) = self.cache_slot(method, url, request_body) else { return Ok(false) };
        if !(status == 200 || status == 404 && slot.keeps_not_found) || !self.vault.is_unlocked() {
            return Ok(false);
        }
        let entry =
            CachedResponse { status, content_type: content_type.into(), body: crate::register::Bytes(body.to_vec()) };
        let bytes = serde_json::to_vec(&entry).map_err(|e| CoreError::BadInput(e.to_string()))?;
        self.vault.put_record(StoreName::Cache, &slot.id, &bytes).await?;
        if status == 200 && method.eq_ignore_ascii_case("GET") && self.is_me_read(url) {
            self.remember_me(body).await?;
        }
        if status == 200 && method.eq_ignore_ascii_case("GET") {
            self.remember_objects(url, body).await?;
        }
        Ok(true)
    }

    /// The record holding the objects of one resource of
    /// [`crate::metadata_answers::OBJECTS_KEPT_BY_ID`] seen online (vault-wide, sealed).
    pub(crate) fn objects_seen_id(resource: &str) -> String {
        format!("objects seen online\n{resource}")
    }

    /// Merges the objects of an online answer into what is known of their resource's objects.
    async fn remember_objects(&self, url: &str, body: &[u8]) -> Result<()> {
        let target = Target::parse(url);
        let Some(relative) = target.relative_to(&self.api_path()).map(unversioned) else { return Ok(()) };
        if !crate::metadata_answers::OBJECTS_KEPT_BY_ID.iter().any(|r| relative.starts_with(r)) {
            return Ok(());
        }
        let Ok(answer) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
        let Some((resource, objects)) = crate::metadata_answers::objects_in_answer(relative, &answer) else {
            return Ok(());
        };
        if objects.is_empty() {
            return Ok(());
        }
        let id = Self::objects_seen_id(resource);
        let _held = self.seen_merge.lock().await;
        // A damaged record is only a lost convenience: it is rebuilt from this answer on.
        let mut known = match self.vault.get_record(StoreName::Cache, &id).await? {
            Some(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            },
            None => Map::new(),
        };
        for object in objects {
            let Some(uid) = object.get("id").and_then(Value::as_str).map(str::to_string) else { continue };
            match known.get_mut(&uid) {
                Some(existing) => crate::metadata_answers::merge_seen(existing, &object),
                None => {
                    known.insert(uid, object);
                }
            }
        }
        let bytes = serde_json::to_vec(&known).map_err(|e| CoreError::BadInput(e.to_string()))?;
        self.vault.put_record(StoreName::Cache, &id, &bytes).await
    }

    fn is_me_read(&self, url: &str) -> bool {
        Target::parse(url).relative_to(&self.api_path()).map(unversioned).map(strip_json) == Some("me")
    }

    /// The record holding everything the server's `me` answers online told about the
    /// logged-in user (per user, sealed like every cached read).
    pub(crate) fn me_seen_id(&self) -> Option<String> {
        Some(format!("user:{}\nme seen online", self.vault.session_info()?.username))
    }

    /// Merges an online `me` answer into what is known of her `me` (fields of every answer
    /// kept, the latest winning; lists of objects merged by `id`), so that offline a `me` read
    /// with another field selection can be answered ([`crate::metadata_answers`]).
    async fn remember_me(&self, body: &[u8]) -> Result<()> {
        let Ok(answer @ Value::Object(_)) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
        let Some(id) = self.me_seen_id() else { return Ok(()) };
        let _held = self.seen_merge.lock().await;
        let mut known = self.me_seen_online(&id).await?.unwrap_or_else(|| json!({}));
        crate::metadata_answers::merge_seen(&mut known, &answer);
        let bytes = serde_json::to_vec(&known).map_err(|e| CoreError::BadInput(e.to_string()))?;
        self.vault.put_record(StoreName::Cache, &id, &bytes).await
    }

    pub(crate) async fn me_seen_online(&self, id: &str) -> Result<Option<Value>> {
        Ok(match self.vault.get_record(StoreName::Cache, id).await? {
            // A damaged record is only a lost convenience: it is overwritten at the next `me`.
            Some(bytes) => serde_json::from_slice(&bytes).ok(),
            None => None,
        })
    }

    /// Whether a request is a read the worker answers network first and, offline, from the
    /// local copy or the sealed cache: see [`is_server_read`].
    pub fn is_server_read(&self, method: &str, url: &str) -> bool {
        is_server_read(&self.api_path(), method, url)
    }

    /// Answers a read from the local copy or the sealed cache: API GETs as
    /// [`Engine::answer_offline`], server pages from the cache. `Ok(None)`: nothing local.
    pub async fn answer_read_offline(
        &self,
        method: &str,
        url: &str,
        request_body: &[u8],
    ) -> Result<Option<HttpResponse>> {
        if Target::parse(url).relative_to(&self.api_path()).is_some() && method.eq_ignore_ascii_case("GET") {
            return self.answer_offline(url).await;
        }
        match self.cache_slot(method, url, request_body) {
            Some(slot) => self.cached_entry(&slot.id).await,
            None => Ok(None),
        }
    }

    /// Where a cacheable read is kept, or None when it is not one (tracker data routes, writes,
    /// pages outside the server, per-user reads while locked).
    fn cache_slot(&self, method: &str, url: &str, request_body: &[u8]) -> Option<CacheSlot> {
        if !self.is_server_read(method, url) {
            return None;
        }
        let mut target = Target::parse(url);
        let api = self.api_path();
        let (per_user, keeps_not_found) = match target.relative_to(&api) {
            Some(relative) => {
                let stripped = unversioned(relative);
                if !matches!(route(stripped), ReadRoute::Cached | ReadRoute::RequiredValues(_)) {
                    return None;
                }
                let first = stripped.split('/').next().map(strip_json).unwrap_or_default();
                // Key-value reads answer 404 for a key never set; the app expects that answer.
                let key_value = matches!(first, "dataStore" | "userDataStore" | "userSettings" | "systemSettings")
                    && stripped.contains('/');
                let decision = (cache_scope(stripped) == CacheScope::User, key_value);
                // The key is the path without the version: `/api/40/programs` is `/api/programs`.
                if stripped.len() != relative.len() {
                    target.path = format!("{api}/{stripped}");
                }
                decision
            }
            // Server pages carry the user's org unit tree, menu and selection.
            None => (true, false),
        };
        let mut id = format!("{} {}", method.to_ascii_uppercase(), cache_id(&target).trim_start_matches("GET "));
        if !request_body.is_empty() {
            id.push('\n');
            id.push_str(&String::from_utf8_lossy(request_body));
        }
        if per_user {
            let user = self.vault.session_info()?.username;
            id = format!("user:{user}\n{id}");
        }
        Some(CacheSlot { id, keeps_not_found })
    }

    pub(crate) async fn cached_response(&self, url: &str) -> Result<Option<HttpResponse>> {
        match self.cache_slot("GET", url, &[]) {
            Some(slot) => self.cached_entry(&slot.id).await,
            None => Ok(None),
        }
    }

    async fn cached_entry(&self, id: &str) -> Result<Option<HttpResponse>> {
        let Some(bytes) = self.vault.get_record(StoreName::Cache, id).await? else { return Ok(None) };
        let entry: CachedResponse =
            serde_json::from_slice(&bytes).map_err(|e| CoreError::StorageCorrupt(format!("cached response: {e}")))?;
        Ok(Some(HttpResponse {
            status: entry.status,
            headers: vec![("content-type".into(), entry.content_type), (LOCAL_HEADER.0.into(), "cache".into())],
            body: entry.body.0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_reads_are_per_user_unless_allow_listed_metadata() {
        for user in [
            "me",
            "40/me",
            "me/authorization",
            "userSettings",
            "41/userDataStore/a/b",
            "dataStore/a/b",
            "messageConversations",
            "organisationUnits",
            "system/info",
            "systemSettings",
            "programs/orgUnits",
            "40/programs/orgUnits.json",
            "unknownThing",
            "",
            "40",
        ] {
            assert_eq!(cache_scope(user), CacheScope::User, "{user}");
        }
        for shared in [
            "programs",
            "40/programs.json",
            "programs/PrMchProg01",
            "41/optionSets",
            "trackedEntityTypes.json",
            "trackedEntityAttributes/AtNationId1/requiredValues",
            "programRules",
        ] {
            assert_eq!(cache_scope(shared), CacheScope::Vault, "{shared}");
        }
    }

    /// A cached answer's stored format and the key it is kept under (hashed with the vault's
    /// key before it is stored): a change here makes every cached read a miss.
    #[test]
    fn the_cached_answer_format_and_key_are_stable() {
        let entry = CachedResponse {
            status: 200,
            content_type: "application/json".into(),
            body: crate::register::Bytes(br#"{"programs":[]}"#.to_vec()),
        };
        let key = cache_id(&Target::parse("http://h/api/40/programs.json?fields=id,name&paging=false&_=1764900000000"));
        let text = format!("{}\nkey: {key}", serde_json::to_string_pretty(&entry).unwrap());
        insta::assert_snapshot!("cached_answer", text);
    }
}

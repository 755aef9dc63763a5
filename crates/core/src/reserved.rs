//! Generated attribute values (e.g. the registration number) for registrations made offline:
//! reserved on the server while online (`generateAndReserve`), kept sealed, and handed out one
//! at a time when the app asks `.../generate` while the server cannot be reached. A value is
//! removed from the pool in the same transaction that hands it out, so it is never given twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    engine::Engine,
    error::{CoreError, Result},
    http::{HttpClient, HttpResponse},
    kdf::PasswordKdf,
    metadata::ClinicMetadata,
    random::RandomSource,
    reads::LOCAL_HEADER,
    store::{KvStore, StoreName},
};

/// Values kept per generated attribute.
pub const POOL_SIZE: usize = 50;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pool {
    /// Reserved values as the server gave them (`{ownerObject, ownerUid, key, value, created, expiryDate}`).
    values: Vec<Value>,
}

fn pool_id(attribute: &str) -> String {
    format!("reserved:{attribute}")
}

impl<S: KvStore, K: PasswordKdf, R: RandomSource, H: HttpClient> Engine<S, K, R, H> {
    async fn pool(&self, attribute: &str) -> Result<Pool> {
        Ok(match self.vault.get_record(StoreName::Cache, &pool_id(attribute)).await? {
            Some(b) => {
                serde_json::from_slice(&b).map_err(|e| CoreError::StorageCorrupt(format!("reserved values: {e}")))?
            }
            None => Pool::default(),
        })
    }

    async fn save_pool(&self, attribute: &str, pool: &Pool) -> Result<()> {
        let bytes = serde_json::to_vec(pool).map_err(|e| CoreError::BadInput(e.to_string()))?;
        self.vault.put_record(StoreName::Cache, &pool_id(attribute), &bytes).await
    }

    /// Tops up the pool of every generated attribute of the clinic's programs. Returns how
    /// many values were reserved. Expired values are dropped first.
    pub async fn top_up_reserved_values(&self, meta: &ClinicMetadata, now_ms: i64) -> Result<u64> {
        let now = crate::time::iso_from_ms(now_ms);
        let mut reserved = 0;
        let mut seen = std::collections::BTreeSet::new();
        for attribute in meta.programs.iter().flat_map(|p| &p.attributes).filter(|a| a.generated) {
            if !seen.insert(attribute.id.clone()) {
                continue;
            }
            let mut pool = self.pool(&attribute.id).await?;
            pool.values.retain(|v| v.get("expiryDate").and_then(Value::as_str).is_none_or(|e| e > now.as_str()));
            let missing = POOL_SIZE.saturating_sub(pool.values.len());
            if missing > 0 {
                let url = format!(
                    "{}/trackedEntityAttributes/{}/generateAndReserve?numberToReserve={missing}",
                    self.config.api_base, attribute.id
                );
                if let Value::Array(values) = self.get_json(&url).await? {
                    reserved += values.len() as u64;
                    pool.values.extend(values);
                }
            }
            self.save_pool(&attribute.id, &pool).await?;
        }
        Ok(reserved)
    }

    /// Answers `GET .../trackedEntityAttributes/{id}/generate` from the pool (offline), in the
    /// server's shape. None when the pool is empty.
    pub(crate) async fn generate_offline(&self, attribute: &str) -> Result<Option<HttpResponse>> {
        let mut pool = self.pool(attribute).await?;
        if pool.values.is_empty() {
            return Ok(None);
        }
        let value = pool.values.remove(0);
        self.save_pool(attribute, &pool).await?;
        Ok(Some(HttpResponse {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json;charset=UTF-8".into()),
                (LOCAL_HEADER.0.into(), LOCAL_HEADER.1.into()),
            ],
            body: value.to_string().into_bytes(),
        }))
    }

    /// Answers `GET .../trackedEntityAttributes/{id}/requiredValues` offline: the pool was
    /// reserved without pattern parameters, so while it has values `generate` needs none.
    /// None when there is no pool (the sealed cache may still hold the online answer).
    pub(crate) async fn required_values_offline(&self, attribute: &str) -> Result<Option<HttpResponse>> {
        if self.pool(attribute).await?.values.is_empty() {
            return Ok(None);
        }
        Ok(Some(HttpResponse {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json;charset=UTF-8".into()),
                (LOCAL_HEADER.0.into(), LOCAL_HEADER.1.into()),
            ],
            body: br#"{"REQUIRED":[],"OPTIONAL":[]}"#.to_vec(),
        }))
    }

    /// How many reserved values are left for an attribute.
    pub async fn reserved_count(&self, attribute: &str) -> Result<usize> {
        Ok(self.pool(attribute).await?.values.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored pool of reserved values of one attribute, and its record id.
    #[test]
    fn the_reserved_pool_format_is_stable() {
        let pool = Pool {
            values: vec![serde_json::json!({"ownerObject": "TRACKEDENTITYATTRIBUTE", "ownerUid": "AtNationId1",
                "key": "RANDOM(#######)", "value": "4012345", "created": "2026-12-01T08:00:00.000",
                "expiryDate": "2027-02-01T08:00:00.000"})],
        };
        let text = format!("{}\nid: {}", serde_json::to_string_pretty(&pool).unwrap(), pool_id("AtNationId1"));
        insta::assert_snapshot!("reserved_pool", text);
        let read: Pool = serde_json::from_str(&serde_json::to_string(&pool).unwrap()).unwrap();
        assert_eq!(read.values, pool.values);
    }
}

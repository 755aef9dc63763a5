//! The conformance suite every [`KvStore`] must pass. Each function takes a fresh, empty
//! store; run natively on [`MemoryStore`] and in Chromium on IndexedDB (feature `testing`).
//! A failure names the check and shows the value found beside the one expected.

use super::*;

/// Put, get, overwrite, delete, list order, count.
pub async fn basic_crud(store: &impl KvStore) -> Result<()> {
    check_eq(store.get(StoreName::Records, "a").await?, None, "empty store has no key")?;
    store
        .write(WriteBatch::new().put(StoreName::Records, "b", vec![2]).put(StoreName::Records, "a", vec![1, 0, 255]))
        .await?;
    check_eq(store.get(StoreName::Records, "a").await?, Some(vec![1, 0, 255]), "bytes round-trip")?;
    check_eq(store.get(StoreName::Users, "a").await?, None, "stores are separate")?;
    store.write(WriteBatch::new().put(StoreName::Records, "a", vec![9])).await?;
    check_eq(store.get(StoreName::Records, "a").await?, Some(vec![9]), "put overwrites")?;
    let listed = store.list(StoreName::Records).await?;
    check_eq(listed, vec![("a".to_string(), vec![9]), ("b".to_string(), vec![2])], "list ordered by key")?;
    check_eq(store.count(StoreName::Records).await?, 2, "count")?;
    check_eq(
        store.list_keys(StoreName::Records).await?,
        vec!["a".to_string(), "b".into()],
        "list_keys ordered by key",
    )?;
    check_eq(store.list_keys(StoreName::Outbox).await?, Vec::<String>::new(), "list_keys of an empty store")?;
    // Hex keys as the vault writes them, around the edges of each prefix's range.
    let hex = ["0f", "a0", "a0ff", "a1", "a10", "afff", "b0", "ff", "ffff"].map(String::from);
    store.write(hex.iter().fold(WriteBatch::new(), |b, k| b.put(StoreName::Index, k.clone(), vec![1]))).await?;
    check_eq(
        store.list_keys_with_prefixes(StoreName::Index, &["a1".into(), "a0".into(), "ff".into()]).await?,
        ["a0", "a0ff", "a1", "a10", "ff", "ffff"].map(String::from).to_vec(),
        "list_keys_with_prefixes: every key under each prefix, ordered by key",
    )?;
    check_eq(
        store.list_keys_with_prefixes(StoreName::Index, &["c".into()]).await?,
        Vec::<String>::new(),
        "list_keys_with_prefixes of a prefix nothing starts with",
    )?;
    check_eq(
        store.list_keys_with_prefixes(StoreName::Index, &[]).await?,
        Vec::<String>::new(),
        "list_keys_with_prefixes of no prefix",
    )?;
    store.write(hex.iter().fold(WriteBatch::new(), |b, k| b.delete(StoreName::Index, k.clone()))).await?;
    store.write(WriteBatch::new().delete(StoreName::Records, "a").delete(StoreName::Records, "zz")).await?;
    check_eq(store.get(StoreName::Records, "a").await?, None, "delete removes")?;
    check_eq(store.count(StoreName::Records).await?, 1, "count after delete")?;
    store.write(WriteBatch::new().put(StoreName::Records, "empty", vec![])).await?;
    check_eq(store.get(StoreName::Records, "empty").await?, Some(vec![]), "empty value kept")?;
    let keys = ["b", "a", "empty", "b"].map(String::from);
    check_eq(
        store.get_many(StoreName::Records, &keys).await?,
        vec![Some(vec![2]), None, Some(vec![]), Some(vec![2])],
        "get_many answers in the order asked, None where absent",
    )?;
    check_eq(store.get_many(StoreName::Records, &[]).await?, vec![], "get_many of no key")?;
    Ok(())
}

/// A batch holding a value still to be sealed is refused whole: plaintext never lands.
pub async fn unsealed_values_are_refused(store: &impl KvStore) -> Result<()> {
    let batch = WriteBatch::new().put(StoreName::Records, "sealed", vec![1]).seal(
        StoreName::Records,
        "plain",
        b"records|plain".to_vec(),
        b"Fatima",
    );
    let refused = store.write(batch).await;
    check(refused.is_err(), &format!("a batch with an unsealed value is refused: found {refused:?}"))?;
    check_eq(store.get(StoreName::Records, "sealed").await?, None, "nothing of it is written")?;
    check_eq(store.get(StoreName::Records, "plain").await?, None, "the plaintext is not written")?;
    Ok(())
}

/// A batch over several stores commits together.
pub async fn batch_spans_stores(store: &impl KvStore) -> Result<()> {
    store
        .write(
            WriteBatch::new()
                .put(StoreName::Records, "r1", b"record".to_vec())
                .put(StoreName::Outbox, "o1", b"entry".to_vec())
                .put(StoreName::Meta, "m", b"meta".to_vec()),
        )
        .await?;
    check(store.get(StoreName::Records, "r1").await?.is_some(), "record written")?;
    check(store.get(StoreName::Outbox, "o1").await?.is_some(), "outbox written")?;
    check(store.get(StoreName::Meta, "m").await?.is_some(), "meta written")?;
    Ok(())
}

/// A batch that fails part-way leaves nothing of itself behind.
pub async fn failed_batch_writes_nothing(store: &impl KvStore) -> Result<()> {
    store.write(WriteBatch::new().put(StoreName::Records, "keep", vec![1])).await?;
    let bad = WriteBatch::new()
        .put(StoreName::Records, "new", vec![2])
        .put(StoreName::Outbox, "o", vec![3])
        .delete(StoreName::Records, "keep")
        .put(StoreName::Records, "", vec![4]);
    let refused = store.write(bad).await;
    check(refused.is_err(), &format!("an empty key is refused: found {refused:?}"))?;
    check_eq(store.get(StoreName::Records, "new").await?, None, "first put rolled back")?;
    check_eq(store.get(StoreName::Outbox, "o").await?, None, "other store rolled back")?;
    check_eq(store.get(StoreName::Records, "keep").await?, Some(vec![1]), "delete rolled back")?;
    Ok(())
}

/// Large values and many keys.
pub async fn large_values(store: &impl KvStore) -> Result<()> {
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut batch = WriteBatch::new().put(StoreName::Cache, "big", big.clone());
    for i in 0..200 {
        batch = batch.put(StoreName::Records, format!("k{i:04}"), vec![i as u8; 64]);
    }
    store.write(batch).await?;
    let found = store.get(StoreName::Cache, "big").await?;
    check_eq(found.as_ref().map(Vec::len), Some(big.len()), "1 MB value keeps its length")?;
    check(found == Some(big), "1 MB value round-trips")?;
    check_eq(store.count(StoreName::Records).await?, 200, "200 keys")?;
    Ok(())
}

/// A precondition that holds lets the batch through; one that fails refuses the whole
/// batch with [`CoreError::StaleWrite`] (a value that changed, a key expected absent that
/// exists, a key expected present that is absent), whatever stores it spans.
pub async fn precondition_guards_the_batch(store: &impl KvStore) -> Result<()> {
    store.write(WriteBatch::new().put(StoreName::Meta, "root", vec![1, 2, 3])).await?;
    store
        .write(
            WriteBatch::new()
                .expect(StoreName::Meta, "root", Some(vec![1, 2, 3]))
                .expect(StoreName::Meta, "none", None)
                .put(StoreName::Records, "r", vec![1])
                .put(StoreName::Meta, "root", vec![4]),
        )
        .await?;
    check_eq(store.get(StoreName::Records, "r").await?, Some(vec![1]), "a batch whose precondition holds")?;
    for (expected, what) in [
        (Some(vec![1, 2, 3]), "a changed value"),
        (None, "a key expected absent"),
        (Some(vec![4, 0]), "a longer value"),
        (Some(vec![]), "an empty value"),
    ] {
        let stale = store
            .write(
                WriteBatch::new()
                    .delete(StoreName::Records, "r")
                    .put(StoreName::Outbox, "o", vec![2])
                    .expect(StoreName::Meta, "root", expected)
                    .put(StoreName::Meta, "root", vec![5]),
            )
            .await;
        check(matches!(stale, Err(CoreError::StaleWrite(_))), &format!("{what}: found {stale:?}"))?;
        check_eq(store.get(StoreName::Records, "r").await?, Some(vec![1]), "a stale batch deletes nothing")?;
        check_eq(store.get(StoreName::Outbox, "o").await?, None, "a stale batch puts nothing")?;
        check_eq(store.get(StoreName::Meta, "root").await?, Some(vec![4]), "a stale batch keeps the value")?;
    }
    let absent = store.write(WriteBatch::new().expect(StoreName::Meta, "none", Some(vec![4])).put(
        StoreName::Records,
        "x",
        vec![1],
    ));
    let absent = absent.await;
    check(matches!(absent, Err(CoreError::StaleWrite(_))), &format!("a key expected present: found {absent:?}"))?;
    check_eq(store.get(StoreName::Records, "x").await?, None, "nothing of it written")?;
    Ok(())
}

/// Runs the whole suite on fresh stores produced by `make`.
pub async fn run_all<S: KvStore, F: std::future::Future<Output = S>>(
    mut make: impl FnMut(&'static str) -> F,
) -> Result<()> {
    basic_crud(&make("basic_crud").await).await?;
    batch_spans_stores(&make("batch_spans_stores").await).await?;
    failed_batch_writes_nothing(&make("failed_batch_writes_nothing").await).await?;
    large_values(&make("large_values").await).await?;
    precondition_guards_the_batch(&make("precondition_guards_the_batch").await).await?;
    unsealed_values_are_refused(&make("unsealed_values_are_refused").await).await?;
    Ok(())
}

fn check(condition: bool, what: &str) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(CoreError::Storage(format!("conformance failed: {what}")))
    }
}

/// As [`check`], for a value: the failure shows what was found and what was expected.
fn check_eq<T: PartialEq + std::fmt::Debug>(found: T, expected: T, what: &str) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(CoreError::Storage(format!("conformance failed: {what}: found {found:?}, expected {expected:?}")))
    }
}

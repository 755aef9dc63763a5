//! `--seed demo --tracked-entities N`: realistic, deterministic MCH data for benchmarks.
//!
//! Each woman gets the six Person attributes (Arabic or English names, a 9-digit national ID,
//! a birth date 1975–2008, a Palestinian mobile number, an `MCH-######` registration number),
//! one MCH enrollment and her visits: ANC visits a few weeks apart, and when the pregnancy is
//! over, delivery, postnatal care and newborn events. Most women are registered in Bani Naim,
//! the rest in Dura and Yatta. A seeded RNG makes the data the same on every run; everything
//! is written in one transaction with prepared statements.

use chrono::{Duration, NaiveDate, NaiveDateTime};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rusqlite::{params, Connection};

use crate::{db, error::SimError, seed::*};

/// Settings key recording that the generator ran (and for how many).
pub const GENERATED_KEY: &str = "generatedTrackedEntities";

/// Seed of the generator's RNG.
pub const RNG_SEED: u64 = 0x4d43_485f_5049_4d53;

const FIRST_NAMES: &[&str] = &[
    "Amal",
    "Rania",
    "Huda",
    "Lina",
    "Maryam",
    "Fatima",
    "Aisha",
    "Noor",
    "Salma",
    "Yasmin",
    "Dalia",
    "Hiba",
    "Reem",
    "Samar",
    "Rasha",
    "Mona",
    "Laila",
    "Nadia",
    "Sawsan",
    "Abeer",
    "Ruba",
    "Inas",
    "Haneen",
    "Ola",
    "Asmaa",
    "Sara",
    "آمال",
    "رانيا",
    "هدى",
    "لينا",
    "مريم",
    "فاطمة",
    "عائشة",
    "نور",
    "سلمى",
    "ياسمين",
    "هبة",
    "ريم",
    "سماح",
    "منى",
    "ليلى",
    "نادية",
    "عبير",
    "حنين",
    "أسماء",
    "سارة",
];
const LAST_NAMES: &[&str] = &[
    "Haddad",
    "Khalil",
    "Saleh",
    "Hamdan",
    "Darwish",
    "Jaber",
    "Masri",
    "Nasser",
    "Qawasmi",
    "Tamimi",
    "Shalaldeh",
    "Amro",
    "Jaabari",
    "Zahran",
    "Abu Sneineh",
    "Rajabi",
    "Dweik",
    "Hroub",
    "Shawamreh",
    "Makhamreh",
    "حداد",
    "خليل",
    "صالح",
    "حمدان",
    "درويش",
    "جابر",
    "المصري",
    "ناصر",
    "القواسمي",
    "التميمي",
    "عمرو",
    "الجعبري",
    "زهران",
    "الرجبي",
    "الدويك",
    "الهروب",
    "الشواورة",
    "المخامرة",
];
const REMARKS: &[&str] =
    &["", "", "", "Feeling well", "Mild nausea", "Advised iron supplements", "Back pain", "Referred for ultrasound"];

/// Generates `n` tracked entities unless the generator already ran on this database (then
/// nothing happens). Needs the demo seed (org units and metadata).
pub fn ensure(conn: &mut Connection, n: usize) -> Result<bool, SimError> {
    if db::get_setting(conn, GENERATED_KEY)?.is_some() {
        return Ok(false);
    }
    if db::org_unit_by_uid(conn, OU_BANI_NAIM)?.is_none() {
        return Err(SimError::Config("--tracked-entities needs the demo seed (--seed demo)".into()));
    }
    let started = std::time::Instant::now();
    let tx = conn.transaction()?;
    generate(&tx, n, RNG_SEED)?;
    db::set_setting(&tx, GENERATED_KEY, &n.to_string())?;
    tx.commit()?;
    tracing::info!(tracked_entities = n, elapsed_ms = started.elapsed().as_millis(), "generated demo tracker data");
    Ok(true)
}

fn uid(rng: &mut StdRng) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut s = String::with_capacity(11);
    s.push(char::from(LETTERS[rng.random_range(0..LETTERS.len())]));
    for _ in 0..10 {
        s.push(char::from(ALNUM[rng.random_range(0..ALNUM.len())]));
    }
    s
}

/// An event to write: stage, date, data values.
type PlannedEvent = (&'static str, NaiveDateTime, Vec<(&'static str, String)>);

fn ts(dt: NaiveDateTime) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

/// Writes `n` tracked entities with the given RNG seed (inside the caller's transaction).
pub fn generate(conn: &Connection, n: usize, seed: u64) -> Result<(), SimError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let ous: Vec<(String, String)> = [OU_BANI_NAIM, OU_DURA, OU_YATTA]
        .iter()
        .map(|u| db::org_unit_by_uid(conn, u).map(|o| o.map(|o| (o.uid, o.path))))
        .collect::<rusqlite::Result<Option<Vec<_>>>>()?
        .ok_or_else(|| SimError::Config("demo org units missing".into()))?;
    let start_seq: i64 = conn.query_row(
        "SELECT COALESCE(MAX(counter), 0) FROM value_sequences WHERE attribute = ?1",
        [ATTR_REG_NUMBER],
        |r| r.get(0),
    )?;
    let today = chrono::Utc::now().date_naive();
    let base = NaiveDate::from_ymd_opt(2023, 1, 1).and_then(|d| d.and_hms_opt(8, 0, 0)).unwrap_or_default();
    let mut ins_te = conn.prepare(
        "INSERT INTO tracked_entities (uid, tracked_entity_type, org_unit, ou_path, created, last_updated, \
         created_by, last_updated_by, stored_by) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?6, ?6)",
    )?;
    let mut ins_av = conn.prepare(
        "INSERT INTO attribute_values (te_id, attribute, value, created, last_updated, stored_by) \
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    )?;
    let mut ins_en = conn.prepare(
        "INSERT INTO enrollments (uid, te_id, program, org_unit, status, enrollment_date, incident_date, \
         completed_date, completed_by, created, last_updated, created_by, last_updated_by, stored_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?12)",
    )?;
    let mut ins_owner = conn.prepare("INSERT INTO program_owners (te_id, program, org_unit) VALUES (?1, ?2, ?3)")?;
    let mut ins_ev = conn.prepare(
        "INSERT INTO events (uid, enrollment_id, te_id, program, program_stage, org_unit, ou_path, status, \
         event_date, due_date, completed_date, completed_by, created, last_updated, created_by, last_updated_by, \
         stored_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?12, ?13, ?13, ?13)",
    )?;
    let mut ins_dv = conn.prepare(
        "INSERT INTO data_values (event_id, data_element, value, provided_elsewhere, created, last_updated, stored_by) \
         VALUES (?1, ?2, ?3, 0, ?4, ?4, ?5)",
    )?;
    for i in 0..n {
        let r: u32 = rng.random_range(0..100);
        let (ou, path) = &ous[if r < 70 {
            0
        } else if r < 85 {
            1
        } else {
            2
        }];
        let user = if ou == OU_BANI_NAIM {
            if rng.random_bool(0.5) {
                NURSE1_USERNAME
            } else {
                NURSE2_USERNAME
            }
        } else {
            ADMIN_USERNAME
        };
        // Registered some time between 2023-01-01 and about a month ago.
        let span_days = (today - base.date()).num_days().max(60) - 30;
        let enrolled =
            base + Duration::days(rng.random_range(0..span_days)) + Duration::minutes(rng.random_range(0..600));
        let created = ts(enrolled);
        let te_uid = uid(&mut rng);
        ins_te.execute(params![te_uid, TET_PERSON, ou, path, created, user])?;
        let te_id = conn.last_insert_rowid();

        let idx = i64::try_from(i).unwrap_or(i64::MAX);
        let national_id = format!("{:09}", 400_000_000 + idx * 17 + rng.random_range(0..17));
        let dob = NaiveDate::from_ymd_opt(1975, 1, 1).unwrap_or_default() + Duration::days(rng.random_range(0..12_400));
        let phone = format!("+9705{}{:07}", pick(&mut rng, &["6", "9"]), rng.random_range(0..10_000_000));
        let reg = format!("MCH-{:06}", start_seq + idx + 1);
        let attrs = [
            (ATTR_NATIONAL_ID, national_id),
            (ATTR_FIRST_NAME, pick(&mut rng, FIRST_NAMES).to_owned()),
            (ATTR_LAST_NAME, pick(&mut rng, LAST_NAMES).to_owned()),
            (ATTR_DOB, dob.format("%Y-%m-%d").to_string()),
            (ATTR_PHONE, phone),
            (ATTR_REG_NUMBER, reg),
        ];
        for (a, v) in &attrs {
            ins_av.execute(params![te_id, a, v, created, user])?;
        }

        let lmp = enrolled - Duration::days(rng.random_range(28..90));
        let due = lmp + Duration::days(280);
        let delivered = due.date() + Duration::days(rng.random_range(-14..10)) < today;
        let en_uid = uid(&mut rng);
        let (status, completed) = if delivered && rng.random_bool(0.8) {
            ("COMPLETED", Some(ts(due + Duration::days(45))))
        } else {
            ("ACTIVE", None)
        };
        ins_en.execute(params![
            en_uid,
            te_id,
            PROGRAM_MCH,
            ou,
            status,
            ts(enrolled),
            ts(lmp),
            completed,
            completed.as_ref().map(|_| user),
            created,
            completed.clone().unwrap_or_else(|| created.clone()),
            user
        ])?;
        let en_id = conn.last_insert_rowid();
        ins_owner.execute(params![te_id, PROGRAM_MCH, ou])?;

        // ANC visits every 4–6 weeks from registration until delivery or today.
        let mut events: Vec<PlannedEvent> = Vec::new();
        let mut visit = enrolled;
        let anc_count = rng.random_range(2..=5);
        for _ in 0..anc_count {
            if visit.date() >= today || visit >= due {
                break;
            }
            let weeks = (visit - lmp).num_days() / 7;
            let mut values = vec![
                (DE_WEIGHT, format!("{:.1}", rng.random_range(52.0..95.0_f64))),
                (DE_GEST_WEEKS, weeks.max(1).to_string()),
                (DE_BP_SYSTOLIC, rng.random_range(95..145).to_string()),
                (DE_HAEMOGLOBIN, format!("{:.1}", rng.random_range(9.0..14.0_f64))),
                (DE_DANGER_SIGNS, rng.random_bool(0.08).to_string()),
            ];
            let remark = pick(&mut rng, REMARKS);
            if !remark.is_empty() {
                values.push((DE_REMARKS, remark.to_owned()));
            }
            events.push((STAGE_ANC, visit, values));
            visit += Duration::days(rng.random_range(28..43));
        }
        if delivered {
            let birth = due + Duration::days(rng.random_range(-14..10));
            let mode = pick(&mut rng, &["NORMAL", "NORMAL", "NORMAL", "CAESAREAN", "ASSISTED"]);
            events.push((
                STAGE_DELIVERY,
                birth,
                vec![
                    (DE_DELIVERY_DATE, birth.format("%Y-%m-%d").to_string()),
                    (DE_DELIVERY_MODE, mode.to_owned()),
                    (DE_BIRTH_OUTCOME, if rng.random_bool(0.99) { "LIVE_BIRTH" } else { "STILLBIRTH" }.to_owned()),
                ],
            ));
            if rng.random_bool(0.7) {
                events.push((
                    STAGE_NEWBORN,
                    birth + Duration::hours(6),
                    vec![
                        (DE_BIRTH_WEIGHT, rng.random_range(2300..4300).to_string()),
                        (DE_NEWBORN_SEX, pick(&mut rng, &["FEMALE", "MALE"]).to_owned()),
                        (DE_APGAR, rng.random_range(6..11).to_string()),
                    ],
                ));
            }
            let pnc = birth + Duration::days(rng.random_range(3..10));
            if pnc.date() < today && rng.random_bool(0.75) {
                let mut values = vec![
                    (DE_WEIGHT, format!("{:.1}", rng.random_range(50.0..90.0_f64))),
                    (DE_BP_SYSTOLIC, rng.random_range(95..140).to_string()),
                ];
                if rng.random_bool(0.6) {
                    values.push((DE_BREASTFEEDING, "true".to_owned()));
                }
                events.push((STAGE_POSTNATAL, pnc, values));
            }
        }
        for (stage, date, values) in events {
            let when = ts(date);
            let ev_uid = uid(&mut rng);
            ins_ev.execute(params![
                ev_uid,
                en_id,
                te_id,
                PROGRAM_MCH,
                stage,
                ou,
                path,
                "COMPLETED",
                when,
                when,
                user,
                when,
                user
            ])?;
            let ev_id = conn.last_insert_rowid();
            for (de, v) in values {
                ins_dv.execute(params![ev_id, de, v, when, user])?;
            }
        }
    }
    let end_seq = start_seq + i64::try_from(n).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT INTO value_sequences (attribute, key, counter) VALUES (?1, 'MCH-######', ?2) \
         ON CONFLICT(attribute, key) DO UPDATE SET counter = MAX(counter, excluded.counter)",
        params![ATTR_REG_NUMBER, end_seq],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn generates_deterministic_data() {
        let counts = |seed: u64| {
            let db = Db::open_in_memory().expect("db");
            let mut conn = db.lock();
            crate::seed::apply(&mut conn, crate::SeedMode::Demo).expect("seed");
            let tx = conn.transaction().expect("tx");
            generate(&tx, 200, seed).expect("generate");
            tx.commit().expect("commit");
            let q = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect("count");
            let first: String =
                conn.query_row("SELECT uid FROM tracked_entities ORDER BY id LIMIT 1", [], |r| r.get(0)).expect("uid");
            (
                q("SELECT COUNT(*) FROM tracked_entities"),
                q("SELECT COUNT(*) FROM enrollments"),
                q("SELECT COUNT(*) FROM events"),
                q("SELECT COUNT(DISTINCT value) FROM attribute_values WHERE attribute = 'AtNationId1'"),
                q("SELECT COUNT(*) FROM tracked_entities WHERE org_unit = 'OuBaniNaim1'"),
                first,
            )
        };
        let a = counts(7);
        assert_eq!(a.0, 200);
        assert_eq!(a.1, 200);
        assert!(a.2 >= 400, "events: {}", a.2);
        assert_eq!(a.3, 200, "national IDs are unique");
        assert!(a.4 > 100, "most women are in Bani Naim: {}", a.4);
        assert!(crate::uid::is_valid(&a.5));
        assert_eq!(counts(7).5, a.5, "deterministic");
    }
}

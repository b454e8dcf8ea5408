//! The PostgreSQL and SQLite migrations define the same tables with the same
//! columns, read back from real migrated databases.

use std::collections::BTreeMap;

use sqlx::{Connection, PgConnection, SqliteConnection};

type Schema = BTreeMap<String, Vec<String>>;

async fn postgres_schema(url: &str) -> Schema {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' \
         ORDER BY table_name, column_name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read information_schema");
    conn.close().await.ok();
    group(rows)
}

async fn sqlite_schema(url: &str) -> Schema {
    let mut conn = SqliteConnection::connect(url).await.expect("connect");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite%' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' \
         ORDER BY m.name, p.name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read pragma table_info");
    conn.close().await.ok();
    group(rows)
}

fn group(rows: Vec<(String, String)>) -> Schema {
    let mut schema = Schema::new();
    for (table, column) in rows {
        schema.entry(table).or_default().push(column);
    }
    schema
}

#[tokio::test]
async fn both_backends_have_the_same_tables_and_columns() {
    let pg = ork_tests::db::postgres().await;
    let lite = ork_tests::db::sqlite().await;
    let pg_schema = postgres_schema(&pg.url).await;
    let lite_schema = sqlite_schema(&lite.url).await;
    for table in [
        "workflows",
        "workflow_versions",
        "runs",
        "task_groups",
        "tasks",
        "events",
        "schedules",
    ] {
        assert!(
            pg_schema.contains_key(table),
            "no {table} table: {pg_schema:?}"
        );
    }
    assert_eq!(pg_schema, lite_schema);
}

/// Every object of a SQLite database (tables, indexes, with their SQL) and
/// the migrations it records as applied.
async fn sqlite_contents(
    conn: &mut SqliteConnection,
) -> (Vec<Vec<String>>, Vec<(i64, String, Vec<u8>)>) {
    let objects: Vec<(String, String, String, Option<String>)> =
        sqlx::query_as("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
            .fetch_all(&mut *conn)
            .await
            .expect("read sqlite_master");
    let objects = objects
        .into_iter()
        .map(|(t, n, tbl, sql)| vec![t, n, tbl, sql.unwrap_or_default()])
        .collect();
    let applied = sqlx::query_as(
        "SELECT version, description, checksum FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("read _sqlx_migrations");
    (objects, applied)
}

/// A SQLite file opened read-only; `immutable` also leaves its WAL and
/// lock files alone (for the committed template, which has none).
async fn open_read_only(path: &std::path::Path, immutable: bool) -> SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(immutable);
    SqliteConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// A new SQLite file starts as a copy of `migrations/sqlite-template.db`
/// (`store/template.rs`), so the template must hold exactly what the
/// migrations make, in WAL mode. `UPDATE_TEMPLATE=1` rewrites it from the
/// migrations instead.
#[tokio::test]
async fn the_sqlite_template_is_what_the_migrations_make() {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    let repo = ork_tests::bin::repo();
    let template = repo.join("migrations/sqlite-template.db");
    let dir = tempfile::tempdir().expect("tempdir");
    let made = dir.path().join("made.db");
    let options = SqliteConnectOptions::new()
        .filename(&made)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .expect("create");
    sqlx::migrate::Migrator::new(repo.join("migrations/sqlite"))
        .await
        .expect("read migrations/sqlite")
        .run(&mut conn)
        .await
        .expect("migrate");
    let from_migrations = sqlite_contents(&mut conn).await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .expect("checkpoint");
    conn.close().await.expect("close");
    if std::env::var_os("UPDATE_TEMPLATE").is_some() {
        std::fs::copy(&made, &template).expect("write the template");
        return;
    }

    let bytes = std::fs::read(&template).expect("read the template");
    // The file format's read and write versions: 2 is WAL mode.
    assert_eq!(
        bytes.get(18..20),
        Some(&[2u8, 2][..]),
        "the template is not in WAL mode"
    );
    // Immutable, so that the check leaves the committed file as it was.
    let mut conn = open_read_only(&template, true).await;
    let in_template = sqlite_contents(&mut conn).await;
    conn.close().await.ok();
    assert!(
        in_template == from_migrations,
        "migrations/sqlite-template.db is not what migrations/sqlite makes: \
         rewrite it with `UPDATE_TEMPLATE=1 cargo test -p ork-tests --test migrations`"
    );
}

/// `Store::connect` starts a new SQLite file as a copy of the template
/// (its migrations carry the template's `installed_on`), and openers
/// racing to create the same file all get one whole database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_sqlite_file_is_a_copy_of_the_template() {
    let template = ork_tests::bin::repo().join("migrations/sqlite-template.db");
    let installed_on = |path: std::path::PathBuf, immutable: bool| async move {
        let mut conn = open_read_only(&path, immutable).await;
        let at: Vec<(i64, String)> = sqlx::query_as(
            "SELECT version, CAST(installed_on AS TEXT) FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut conn)
        .await
        .expect("read _sqlx_migrations");
        at
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    let url = format!("sqlite:{}", path.display());
    // Each on a task of its own: the copies are made on several threads.
    let opening = (0..8).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { ork_core::store::Store::connect(&url).await })
    });
    for opened in futures::future::join_all(opening).await {
        let store = opened.expect("join").expect("connect");
        assert!(store.list_workflows().await.expect("read").is_empty());
        store.close().await;
    }
    assert_eq!(
        installed_on(path, false).await,
        installed_on(template, true).await
    );
    // Nothing but the database and its WAL files is left beside it.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert!(left.iter().all(|f| f.starts_with("new.db")), "{left:?}");
}

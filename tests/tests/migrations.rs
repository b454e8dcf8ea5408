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

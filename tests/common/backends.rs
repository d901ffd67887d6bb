//! The storage backends a test can run on: SQLite always; PostgreSQL and
//! MySQL/MariaDB when `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` are set. Each
//! call makes a fresh, empty database, so tests never share data.

use std::io::Write;

use sqlx::{AssertSqlSafe, Connection};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

pub struct Backend {
    pub kind: Kind,
    /// The `database.url` of the fresh database.
    pub url: String,
}

/// Says on the terminal — past the test harness's output capture — which
/// backends a test could not run on.
pub fn skipped(test: &str, what: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {what}");
}

/// A fresh database on every available backend.
pub async fn all(test: &str) -> Vec<Backend> {
    let mut out = vec![Backend { kind: Kind::Sqlite, url: format!("sqlite://{}", super::fresh_db_path().display()) }];
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(base) => out.push(Backend { kind: Kind::Postgres, url: fresh(&base, Kind::Postgres).await }),
        Err(_) => skipped(test, "postgres (TEST_POSTGRES_URL not set)"),
    }
    match std::env::var("TEST_MYSQL_URL") {
        Ok(base) => out.push(Backend { kind: Kind::Mysql, url: fresh(&base, Kind::Mysql).await }),
        Err(_) => skipped(test, "mysql (TEST_MYSQL_URL not set)"),
    }
    out
}

/// Creates a database with a unique name on the server of `base`.
async fn fresh(base: &str, kind: Kind) -> String {
    let name = format!("chat_t_{}", ulid::Ulid::generate().to_string().to_lowercase());
    // The name is generated above, not user input.
    let create = AssertSqlSafe(format!("CREATE DATABASE {name}"));
    match kind {
        Kind::Postgres => {
            let mut c = sqlx::PgConnection::connect(base).await.expect("connect to TEST_POSTGRES_URL");
            sqlx::query(create).execute(&mut c).await.expect("create database");
        }
        Kind::Mysql => {
            let mut c = sqlx::MySqlConnection::connect(base).await.expect("connect to TEST_MYSQL_URL");
            sqlx::query(create).execute(&mut c).await.expect("create database");
        }
        Kind::Sqlite => unreachable!(),
    }
    with_database(base, &name)
}

/// `base` with its database (the URL path) replaced by `name`.
pub fn with_database(base: &str, name: &str) -> String {
    let (head, query) = base.split_once('?').map_or((base, None), |(h, q)| (h, Some(q)));
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let path_start = head[scheme_end..].find('/').map_or(head.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &head[..path_start]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

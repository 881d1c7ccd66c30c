//! A throwaway Postgres database per test, on the server `make test` makes sure runs
//! (`RIGHTSIZER_TEST_POSTGRES_URL`, default the local trust-auth server).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// URL of the maintenance database on the test server.
pub fn server_url() -> String {
    std::env::var("RIGHTSIZER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into())
}

/// A database created for one test.
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `rs_it_<pid>_<n>` on the test server.
    pub async fn create() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rs_it_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let server = server_url();
        let mut conn = sqlx::PgConnection::connect(&server)
            .await
            .expect("the test Postgres must be running (make test starts it)");
        sqlx::query(&format!("drop database if exists {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("create database {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = server
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(server.clone());
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops it (after the pools using it are gone).
    pub async fn drop_database(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&server_url()).await {
            let _ = sqlx::query(&format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

//! The Redis pool hands out a connection without a check when it was in use within the last
//! second; one that a command found lost must not come back from the pool.

use chargegrid::store::redis;
use deadpool_redis::redis::cmd;

use crate::helpers::base_settings;

#[tokio::test]
async fn a_connection_found_lost_is_replaced_not_handed_out_again() {
    let mut settings = base_settings().redis;
    // one connection: what the pool hands out next is either that one or its replacement
    settings.pool_size = 1;
    let pool = redis::pool(&settings).unwrap();
    let first: i64 = {
        let mut conn = pool.get().await.unwrap();
        cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await
            .unwrap()
    };
    // the server ends that connection (as a Redis restart does), from a connection of its own
    let killer =
        deadpool_redis::redis::Client::open(secrecy::ExposeSecret::expose_secret(&settings.url))
            .unwrap();
    let mut killer = killer.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(first)
        .query_async(&mut killer)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    // handed out again at once (used less than a second ago: no check), its command fails; on a
    // machine slow enough for a second to pass, the idle check replaces it first instead
    let second = {
        let mut conn = pool.get().await.unwrap();
        cmd("CLIENT").arg("ID").query_async::<i64>(&mut conn).await
    };
    match second {
        Err(_) => {
            // found lost: replaced, not handed out again
            let mut conn = pool.get().await.unwrap();
            let next: i64 = cmd("CLIENT")
                .arg("ID")
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_ne!(next, first);
        }
        Ok(next) => assert_ne!(next, first, "the killed connection answered"),
    }
}

//! The demo fleet of `chargegrid seed-demo`: chargers at demo stations, a demo operator and a
//! demo driver with a funded wallet, so that a fresh checkout charges at once (`scripts/dev.sh`
//! connects simulated chargers under these ids). Every credential here is public and for
//! development only; each step leaves what exists as it is.

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::api::graphql::accounts::create_user;
use crate::auth::password;
use crate::context::CoreContext;
use crate::domain::{ChargePointId, Email, Money, Password, PersonName, Role};
use crate::store::{chargers, top_ups, users, StoreError};

/// The simulator names chargers `{prefix}{index:06}`: `scripts/dev.sh` runs it with this prefix
/// from index 1.
pub const CHARGER_PREFIX: &str = "DEMO-";
pub const CHARGERS: u32 = 5;
/// Development only: every demo charger's HTTP Basic password (security profile 1).
pub const CHARGER_PASSWORD: &str = "demo-charger-password-dev";
pub const OPERATOR_EMAIL: &str = "operator@demo.chargegrid.dev";
/// Development only.
pub const OPERATOR_PASSWORD: &str = "demo-operator-password";
pub const DRIVER_EMAIL: &str = "driver@demo.chargegrid.dev";
/// Development only.
pub const DRIVER_PASSWORD: &str = "demo-driver-password";
/// What the demo driver's wallet is credited with, once (an idempotency key guards it).
const DRIVER_FUNDS: Decimal = Decimal::from_parts(5000, 0, 0, false, 2);
const FUNDS_KEY: &str = "seed-demo:driver-wallet";

/// What exists after `ensure`, for printing.
pub struct DemoFleet {
    pub chargers: Vec<(String, Uuid, String)>,
    pub created_chargers: usize,
    pub operator_created: bool,
    pub driver_created: bool,
    pub driver_balance: Decimal,
    pub currency: String,
}

/// Demo stations: the first bundled stations by OCM id, one charger each (the first station
/// gets two, to show a site with more than one).
async fn stations(core: &CoreContext) -> anyhow::Result<Vec<(Uuid, String)>> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, name FROM stations WHERE ocm_id IS NOT NULL AND is_live ORDER BY ocm_id LIMIT 4",
    )
    .fetch_all(&core.db)
    .await?;
    anyhow::ensure!(
        !rows.is_empty(),
        "no stations to put demo chargers at (the bundled import found none)"
    );
    Ok(rows)
}

/// The user with `email`, created with `role` if missing; true when it was created.
async fn ensure_user(
    core: &CoreContext,
    email: &str,
    name: &str,
    password: &str,
    role: Role,
) -> anyhow::Result<(users::UserRecord, bool)> {
    let email = Email::parse(email)?;
    if let Some(user) = users::find_by_email(&core.db, &email).await? {
        return Ok((user, false));
    }
    let source = format!("chargegrid-seed-demo/{}", core.settings.node_id);
    let user = create_user(
        core,
        &source,
        &email,
        &PersonName::parse(name)?,
        &Password::parse(password)?,
        role,
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.message()))?;
    Ok((user, true))
}

pub async fn ensure(core: &CoreContext) -> anyhow::Result<DemoFleet> {
    let stations = stations(core).await?;
    let mut fleet = Vec::new();
    let mut created_chargers = 0;
    for n in 1..=CHARGERS {
        let id = ChargePointId::parse(&format!("{CHARGER_PREFIX}{n:06}"))?;
        let (station, name) = &stations[(n.saturating_sub(2) as usize) % stations.len()];
        if chargers::find(&core.db, id.as_str()).await?.is_none() {
            let hash = password::hash(CHARGER_PASSWORD.to_string())
                .await
                .map_err(|e| anyhow::anyhow!("hashing a demo charger's password: {e}"))?;
            chargers::register(&core.db, id.as_str(), *station, Some(&hash), 1).await?;
            created_chargers += 1;
        }
        fleet.push((id.as_str().to_string(), *station, name.clone()));
    }
    // an ADMIN, so that every console command works for the demo (an OPERATOR may not change
    // credentials or credit wallets)
    let (operator, operator_created) = ensure_user(
        core,
        OPERATOR_EMAIL,
        "Demo Operator",
        OPERATOR_PASSWORD,
        Role::Admin,
    )
    .await?;
    let (driver, driver_created) = ensure_user(
        core,
        DRIVER_EMAIL,
        "Demo Driver",
        DRIVER_PASSWORD,
        Role::Driver,
    )
    .await?;
    // the creditWallet path: once per idempotency key, recorded in the audit log
    let funds = Money::parse_positive(DRIVER_FUNDS, core.settings.billing.max_top_up)?;
    let balance = match top_ups::credit(
        &core.db,
        operator.id,
        driver.id,
        funds,
        "seed-demo: development funds",
        FUNDS_KEY,
    )
    .await
    {
        Ok(_) | Err(StoreError::Conflict(_)) => {
            users::find_by_email(&core.db, &Email::parse(DRIVER_EMAIL)?)
                .await?
                .map(|u| u.wallet_balance)
                .unwrap_or(driver.wallet_balance)
        }
        Err(e) => return Err(e.into()),
    };
    Ok(DemoFleet {
        chargers: fleet,
        created_chargers,
        operator_created,
        driver_created,
        driver_balance: balance,
        currency: driver.wallet_currency,
    })
}

pub fn print(fleet: &DemoFleet) {
    let state = |created: bool| if created { "created" } else { "exists" };
    println!(
        "demo chargers: {} created, {} already there",
        fleet.created_chargers,
        fleet.chargers.len() - fleet.created_chargers
    );
    for (id, station, name) in &fleet.chargers {
        println!("  {id}  at {name} ({station})");
    }
    println!();
    println!("DEVELOPMENT-ONLY CREDENTIALS (public, never use them on a reachable server):");
    println!("  chargers   {CHARGER_PREFIX}000001..{CHARGER_PREFIX}{CHARGERS:06}  password {CHARGER_PASSWORD}  (OCPP security profile 1)");
    println!(
        "  operator   {OPERATOR_EMAIL} / {OPERATOR_PASSWORD}  (ADMIN, {}): sign in at /console",
        state(fleet.operator_created)
    );
    println!(
        "  driver     {DRIVER_EMAIL} / {DRIVER_PASSWORD}  (DRIVER, {}), wallet {} {}",
        state(fleet.driver_created),
        fleet.driver_balance,
        fleet.currency
    );
}

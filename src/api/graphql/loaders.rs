//! Batched loading of nested lists (async-graphql DataLoader). A page of stations with their
//! chargers and connectors costs three statements however many stations it has, and concurrent
//! requests share the batches: resolvers of nested fields never query one row set per parent.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use sqlx::PgPool;
use uuid::Uuid;

use super::error::ApiError;
use crate::metrics::Metrics;
use crate::store::chargers::{self, ChargerRecord, ConnectorRecord};
use crate::store::invoices::{self, InvoiceRecord};

/// The chargers installed at a station.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StationChargers(pub Uuid);

/// The connectors of a charger.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChargerConnectors(pub String);

/// The invoice of a session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionInvoice(pub Uuid);

/// A session's load-management allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionAllocationOf(pub Uuid);

/// Loads on the API's own pool; each batch's size is observed as
/// `chargegrid_store_batch_size{batch="graphql_…"}`.
pub struct ApiLoader {
    pub db: PgPool,
    pub metrics: Arc<Metrics>,
}

impl ApiLoader {
    fn observe(&self, batch: &str, keys: usize) {
        self.metrics
            .store_batch_size
            .with_label_values(&[batch])
            .observe(keys as f64);
    }
}

/// The loader the schema shares across requests: no cache (every request sees current rows),
/// batches of at most 1,000 keys.
pub fn loader(db: PgPool, metrics: Arc<Metrics>) -> DataLoader<ApiLoader> {
    DataLoader::new(ApiLoader { db, metrics }, tokio::spawn).max_batch_size(1000)
}

impl Loader<StationChargers> for ApiLoader {
    type Value = Vec<ChargerRecord>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[StationChargers],
    ) -> Result<HashMap<StationChargers, Self::Value>, Self::Error> {
        self.observe("graphql_station_chargers", keys.len());
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let mut found = chargers::by_stations(&self.db, &ids).await?;
        Ok(keys
            .iter()
            .map(|k| (*k, found.remove(&k.0).unwrap_or_default()))
            .collect())
    }
}

impl Loader<ChargerConnectors> for ApiLoader {
    type Value = Vec<ConnectorRecord>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[ChargerConnectors],
    ) -> Result<HashMap<ChargerConnectors, Self::Value>, Self::Error> {
        self.observe("graphql_charger_connectors", keys.len());
        let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let mut found = chargers::connectors_of(&self.db, &ids).await?;
        Ok(keys
            .iter()
            .map(|k| (k.clone(), found.remove(&k.0).unwrap_or_default()))
            .collect())
    }
}

impl Loader<SessionInvoice> for ApiLoader {
    type Value = InvoiceRecord;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[SessionInvoice],
    ) -> Result<HashMap<SessionInvoice, Self::Value>, Self::Error> {
        self.observe("graphql_session_invoice", keys.len());
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let found = invoices::for_sessions(&self.db, &ids).await?;
        Ok(found
            .into_iter()
            .map(|(session, invoice)| (SessionInvoice(session), invoice))
            .collect())
    }
}

impl Loader<SessionAllocationOf> for ApiLoader {
    type Value = f64;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[SessionAllocationOf],
    ) -> Result<HashMap<SessionAllocationOf, Self::Value>, Self::Error> {
        self.observe("graphql_session_allocation", keys.len());
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let found = crate::store::sites::allocations_of(&self.db, &ids).await?;
        Ok(found
            .into_iter()
            .map(|(session, amps)| (SessionAllocationOf(session), amps))
            .collect())
    }
}

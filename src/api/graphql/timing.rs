//! Per-field latency of the API: how long each top-level field of an operation took to resolve
//! (`chargegrid_graphql_field_duration_seconds{type, field}`), so an operator sees startSession
//! apart from the cheap queries sharing `/graphql`. Labels come from the schema (the root
//! type and the field's name, never an alias or a client's operation name): their number is
//! bounded by the schema whatever clients send.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo,
};
use async_graphql::{ServerResult, Value};

use crate::metrics::Metrics;

/// Installs the timing of top-level fields on a schema.
pub struct FieldTiming(pub Arc<Metrics>);

impl ExtensionFactory for FieldTiming {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Timing(self.0.clone()))
    }
}

struct Timing(Arc<Metrics>);

#[async_trait::async_trait]
impl Extension for Timing {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        // nested fields are part of their root field's time; introspection is not the API's work
        if info.path_node.parent.is_some() || info.is_for_introspection {
            return next.run(ctx, info).await;
        }
        let (parent, name) = (info.parent_type, info.name);
        let started = Instant::now();
        let resolved = next.run(ctx, info).await;
        self.0
            .graphql_field_duration_seconds
            .with_label_values(&[parent, name])
            .observe(started.elapsed().as_secs_f64());
        resolved
    }
}

//! Per-operation latency of the API: how long each `POST /graphql` operation took to execute
//! (`chargegrid_graphql_field_duration_seconds{type, field}`), labelled with its type and its
//! first top-level field, so an operator sees startSession apart from the cheap queries sharing
//! `/graphql`. Labels come from the schema: a field the schema does not have on `Query` or
//! `Mutation` (a typo, `__schema`) counts as `other`, so their number is bounded whatever clients
//! send. Measured around the execution in the handler, not by a schema extension: any extension
//! turns off async-graphql's fast path for every field and list item of every response.

use std::collections::HashSet;
use std::sync::OnceLock;

use async_graphql::parser::types::{
    DocumentOperations, OperationType, Selection, TypeKind, TypeSystemDefinition,
};

/// The top-level fields of `Query` and `Mutation`, read from the served schema's SDL once.
#[derive(Debug, Default)]
pub struct RootFields {
    query: HashSet<String>,
    mutation: HashSet<String>,
}

static ROOT_FIELDS: OnceLock<RootFields> = OnceLock::new();

impl RootFields {
    /// The root fields of the schema `sdl` describes.
    pub fn of(sdl: &str) -> Self {
        let mut fields = Self::default();
        let Ok(doc) = async_graphql::parser::parse_schema(sdl) else {
            return fields;
        };
        for definition in doc.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let into = match ty.node.name.node.as_str() {
                "Query" => &mut fields.query,
                "Mutation" => &mut fields.mutation,
                _ => continue,
            };
            if let TypeKind::Object(object) = &ty.node.kind {
                into.extend(object.fields.iter().map(|f| f.node.name.node.to_string()));
            }
        }
        fields
    }

    /// Remembers the served schema's root fields (the first call wins: one schema per process).
    pub fn install(sdl: &str) {
        let _ = ROOT_FIELDS.get_or_init(|| Self::of(sdl));
    }

    /// The labels of `request`'s operation under the served schema's root fields.
    pub fn label(request: &mut async_graphql::Request) -> (&'static str, String) {
        Self::label_by(ROOT_FIELDS.get(), request)
    }

    /// The labels of `request`'s operation: its type and its first top-level field when `known`
    /// has it, else `other`.
    fn label_by(
        known: Option<&RootFields>,
        request: &mut async_graphql::Request,
    ) -> (&'static str, String) {
        let operation_name = request.operation_name.clone();
        let Ok(doc) = request.parsed_query() else {
            return ("other", "other".into());
        };
        let operation = match &doc.operations {
            // one anonymous operation: asked for by a name, async-graphql refuses it
            DocumentOperations::Single(op) if operation_name.is_none() => Some(op),
            DocumentOperations::Single(_) => None,
            DocumentOperations::Multiple(ops) => match operation_name.as_deref() {
                Some(name) => ops.get(name),
                None if ops.len() == 1 => ops.values().next(),
                None => None,
            },
        };
        let Some(operation) = operation else {
            return ("other", "other".into());
        };
        let first = operation
            .node
            .selection_set
            .node
            .items
            .iter()
            .find_map(|item| match &item.node {
                Selection::Field(field) => Some(field.node.name.node.as_str()),
                _ => None,
            });
        let (ty, names) = match operation.node.ty {
            OperationType::Query => ("Query", known.map(|k| &k.query)),
            OperationType::Mutation => ("Mutation", known.map(|k| &k.mutation)),
            OperationType::Subscription => ("Subscription", None),
        };
        match (first, names) {
            (Some(field), Some(names)) if names.contains(field) => (ty, field.to_string()),
            _ => (ty, "other".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_schemas_root_fields_or_other() {
        let known = RootFields::of(
            "type Query { me: Int session(id: ID!): Int } type Mutation { startSession: Int }",
        );
        let label = |query: &str, name: Option<&str>| {
            let mut request = async_graphql::Request::new(query);
            request.operation_name = name.map(str::to_string);
            RootFields::label_by(Some(&known), &mut request)
        };
        assert_eq!(label("{ me }", None), ("Query", "me".into()));
        assert_eq!(
            label("{ renamed: session(id: 1) me }", None),
            ("Query", "session".into())
        );
        assert_eq!(
            label("mutation { startSession }", None),
            ("Mutation", "startSession".into())
        );
        // what the schema does not have is not a label of its own
        assert_eq!(label("{ noSuchField }", None), ("Query", "other".into()));
        assert_eq!(
            label("{ __schema { types { name } } }", None),
            ("Query", "other".into())
        );
        assert_eq!(label("mutation { me }", None), ("Mutation", "other".into()));
        assert_eq!(label("{ me", None), ("other", "other".into()));
        // of several operations, the one asked for
        let two = "query A { me } mutation B { startSession }";
        assert_eq!(label(two, Some("B")), ("Mutation", "startSession".into()));
        assert_eq!(label(two, None), ("other", "other".into()));
        assert_eq!(label("{ me }", Some("A")), ("other", "other".into()));
    }
}

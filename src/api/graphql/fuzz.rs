//! Generated GraphQL documents for fuzzing the API (the test
//! `fuzz::generated_graphql_queries_get_coded_answers` and `examples/fuzz_graphql.rs`): real
//! fields and arguments with absurd values, aliases, nesting, recursive fragments, truncation.

use rand::rngs::StdRng;
use rand::Rng;

/// The error codes of the contract; every error of every answer must carry one.
pub const CODES: &[&str] = &[
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "CONFLICT",
    "CHARGER_OFFLINE",
    "CHARGER_REJECTED",
    "CHARGER_TIMEOUT",
    "CONNECTOR_BUSY",
    "INSUFFICIENT_FUNDS",
    "RATE_LIMITED",
    "INTERNAL",
];

const ROOTS: &[&str] = &[
    "me",
    "stations(near: {latitude: 52.5, longitude: 13.4}, first: FIRST)",
    "station(id: ID)",
    "charger(id: ID)",
    "chargers(first: FIRST)",
    "session(id: ID)",
    "mySessions(first: FIRST)",
    "myInvoices",
    "myTopUps(first: FIRST)",
    "__schema",
    "__typename",
];

const FIELDS: &[&str] = &[
    "id",
    "name",
    "email",
    "role",
    "walletBalance",
    "idTag",
    "chargers",
    "connectors",
    "status",
    "online",
    "vendor",
    "invoice",
    "amount",
    "energyKWh",
    "types",
    "fields",
    "nonexistent",
    "__typename",
    "latitude",
    "distanceKm",
];

const MUTATIONS: &[&str] = &[
    "startSession(input: {stationId: ID})",
    "endSession(sessionId: ID)",
    "topUpWallet(amount: \"AMOUNT\", idempotencyKey: \"k\")",
    "createTopUp(amount: \"AMOUNT\", idempotencyKey: \"k\")",
    "payInvoice(invoiceId: ID, idempotencyKey: \"k\")",
    "registerCharger(input: {chargerId: ID, stationId: ID})",
    "logout(refreshToken: \"x\")",
    "addVehicle(input: {brand: \"\", model: \"x\"})",
];

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

fn fill(rng: &mut StdRng, text: &str) -> String {
    let first = ["0", "-1", "20", "100000", "2147483648", "\"x\"", "null"][rng.gen_range(0..7)];
    let id = [
        "\"\"",
        "\"00000000-0000-0000-0000-000000000000\"",
        "\"CP-1\"",
        "1e309",
        "null",
        "\"' OR 1=1 --\"",
    ][rng.gen_range(0..6)];
    let amount = ["1", "-5", "0.001", "1e400", "NaN", "99999999999999999999"][rng.gen_range(0..6)];
    text.replace("FIRST", first)
        .replace("ID", id)
        .replace("AMOUNT", amount)
}

fn selection(rng: &mut StdRng, depth: usize) -> String {
    let mut out = String::from("{ ");
    for _ in 0..rng.gen_range(1..4) {
        if rng.gen_bool(0.2) {
            out.push_str(&format!("a{}: ", rng.gen::<u16>()));
        }
        out.push_str(pick(rng, FIELDS));
        if depth < 6 && rng.gen_bool(0.35) {
            out.push(' ');
            out.push_str(&selection(rng, depth + 1));
        }
        out.push(' ');
    }
    out.push('}');
    out
}

/// One generated document: a query (70 %) or a mutation, sometimes truncated or with a
/// recursive fragment.
pub fn document(rng: &mut StdRng) -> String {
    let mut doc = if rng.gen_bool(0.7) {
        let root = pick(rng, ROOTS);
        let root = fill(rng, root);
        format!("{{ {root} {} }}", selection(rng, 0))
    } else {
        let mutation = pick(rng, MUTATIONS);
        let mutation = fill(rng, mutation);
        format!("mutation {{ {mutation} {} }}", selection(rng, 0))
    };
    if rng.gen_bool(0.1) {
        let cut = rng.gen_range(0..doc.len());
        doc.truncate(cut);
    }
    if rng.gen_bool(0.05) {
        doc = format!("fragment F on Query {{ ...F }} {doc}");
    }
    doc
}

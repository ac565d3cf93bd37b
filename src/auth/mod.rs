//! Authentication: argon2 password hashing, short-lived JWT access tokens, and login rate limits.

pub mod access;
pub mod charger_auth;
pub mod jwt;
pub mod password;
pub mod rate_limit;

pub use jwt::{Claims, JwtKeys, TokenError};

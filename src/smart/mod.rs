//! Load management (docs/smart-charging.md): the sites' controllers share each grid
//! connection among the sessions charging behind it. The allocation itself is the pure
//! `domain::allocation`; `input` turns stored records into its input, `round` runs one
//! re-allocation, and `directory` tells every part of a replica which chargers a site governs.

pub mod directory;
pub mod input;
pub mod round;

pub use directory::SiteDirectory;

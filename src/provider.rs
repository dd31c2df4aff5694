//! provider (being written by the lead).

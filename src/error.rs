//! error (being written by the lead).

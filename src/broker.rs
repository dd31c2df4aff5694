//! broker (being written by the lead).

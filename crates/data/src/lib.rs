//! m2ib-data: see DESIGN.md "The house".

//! The NumPy-like expression language: lexer and parser ([`parser`]) into a syntax tree ([`ast`])
//! with source spans, and NumPy basic indexing ([`slice`]) shared with `dsk export --slice`.
//! Typing and shapes are the planner's job (`plan`).

pub mod ast;
pub mod parser;
pub mod slice;

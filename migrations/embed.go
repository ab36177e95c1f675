// Package migrations holds the SQL schema of tds, one set of files per dialect,
// embedded into the binary. Apply it with tds.Migrate; the files are exported
// only so that operators can read or review exactly what will run.
//
// File names are NNNN_name.up.sql; the number orders them and is recorded in
// the tds_schema_migrations table once the file has been applied.
package migrations

import "embed"

// Postgres is the schema for PostgreSQL (bun's pgdialect).
//
//go:embed postgres/*.sql
var Postgres embed.FS

// SQLite is the schema for SQLite (bun's sqlitedialect).
//
//go:embed sqlite/*.sql
var SQLite embed.FS

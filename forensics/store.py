"""The workspace's DuckDB schema: every table, view and migration lives here.

Longer than 500 lines because it is the whole schema in one module: table and column names are
a public contract for people who open ``forensics.duckdb`` with plain SQL, so they must be
reviewable in one place and change only through numbered, forward-only migrations recorded in
``schema_version``.

Adding a migration: append ``Migration(len(MIGRATIONS) + 1, description, sql)`` to
``MIGRATIONS``; versions are 1..N in the order they are applied. ``migrate`` is the only code
that changes the schema: it applies every migration whose version is not yet recorded, in
ascending order, each in its own transaction, so a crash mid-migration leaves the previous
schema intact.

Workspaces whose ``schema_version`` still holds the per-area numbers of older releases
(1, 10, 11, 30, 40, 50) are renumbered by ``migrate`` first (``LEGACY_VERSIONS``), in one
transaction, then brought up to date like any other.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import duckdb

PRODUCT_MARKER = "nla-forensics"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


_V1 = r"""
CREATE TABLE IF NOT EXISTS workspace_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR
);

-- ---------------------------------------------------------------- datasets & samples
CREATE TABLE IF NOT EXISTS datasets (
    name        VARCHAR PRIMARY KEY,
    created_at  TIMESTAMP DEFAULT current_timestamp,
    description VARCHAR,
    -- bumped by every write that changes the dataset's samples; indexes record it
    version     BIGINT DEFAULT 0,
    updated_at  TIMESTAMP DEFAULT current_timestamp
);

CREATE SEQUENCE IF NOT EXISTS sample_id_seq START 1;
CREATE TABLE IF NOT EXISTS samples (
    sample_id        BIGINT PRIMARY KEY,      -- workspace-wide id, stable forever
    dataset          VARCHAR NOT NULL,
    row_id           VARCHAR NOT NULL,        -- the user's own id (id field or file:line)
    prompt           VARCHAR,
    reply            VARCHAR,
    record           JSON,                    -- the original record, verbatim
    meta             JSON,                    -- the --meta-fields picked out of record
    content_hash     VARCHAR NOT NULL,        -- sha256 of prompt \x1f reply
    prompt_lang      VARCHAR,                 -- ISO 639-1, NULL when undetermined
    prompt_lang_conf DOUBLE,
    reply_lang       VARCHAR,
    reply_lang_conf  DOUBLE,
    n_turns          INTEGER,
    source_file      VARCHAR,
    source_line      BIGINT,
    ingest_id        BIGINT,
    created_at       TIMESTAMP DEFAULT current_timestamp,
    UNIQUE (dataset, row_id)
);

CREATE SEQUENCE IF NOT EXISTS ingest_id_seq START 1;
CREATE TABLE IF NOT EXISTS ingest_runs (
    ingest_id     BIGINT PRIMARY KEY,
    dataset       VARCHAR NOT NULL,
    files         JSON,
    options       JSON,
    status        VARCHAR,                    -- running | done | failed
    started_at    TIMESTAMP DEFAULT current_timestamp,
    finished_at   TIMESTAMP,
    rows_read     BIGINT DEFAULT 0,
    rows_added    BIGINT DEFAULT 0,
    rows_unchanged BIGINT DEFAULT 0,
    rows_conflict BIGINT DEFAULT 0,
    rows_rejected BIGINT DEFAULT 0
);

-- per-file progress so an interrupted ingest resumes where it stopped
CREATE TABLE IF NOT EXISTS ingest_progress (
    dataset     VARCHAR NOT NULL,
    file        VARCHAR NOT NULL,
    file_sig    VARCHAR NOT NULL,             -- size + mtime + head hash
    lines_done  BIGINT NOT NULL,
    finished    BOOLEAN DEFAULT false,
    updated_at  TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (dataset, file, file_sig)
);

CREATE SEQUENCE IF NOT EXISTS reject_id_seq START 1;
CREATE TABLE IF NOT EXISTS rejects (
    reject_id   BIGINT PRIMARY KEY,
    dataset     VARCHAR,
    ingest_id   BIGINT,
    file        VARCHAR,
    line        BIGINT,                       -- 1-based line (JSONL/CSV) or record index
    reason      VARCHAR NOT NULL,             -- malformed_json | missing_field | empty_text | ...
    field       VARCHAR,
    detail      VARCHAR,
    raw         VARCHAR,                      -- the offending text (truncated to 64 KiB)
    created_at  TIMESTAMP DEFAULT current_timestamp
);

-- ---------------------------------------------------------------- anomalies & explanations
CREATE SEQUENCE IF NOT EXISTS anomaly_id_seq START 1;
CREATE TABLE IF NOT EXISTS anomalies (
    anomaly_id  BIGINT PRIMARY KEY,
    title       VARCHAR NOT NULL,
    prompt      VARCHAR,
    reply       VARCHAR,
    prompt_lang VARCHAR,
    reply_lang  VARCHAR,
    meta        JSON,
    created_at  TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS nlas (
    name               VARCHAR PRIMARY KEY,
    av_path            VARCHAR NOT NULL,
    ar_path            VARCHAR,
    target_path        VARCHAR NOT NULL,
    layer              INTEGER NOT NULL,
    hidden_state_index INTEGER NOT NULL,      -- which HF hidden_states[...] is "layer K"
    d_model            INTEGER,
    meta               JSON,                  -- the parsed sidecars
    registered_at      TIMESTAMP DEFAULT current_timestamp
);

CREATE SEQUENCE IF NOT EXISTS explanation_id_seq START 1;
CREATE TABLE IF NOT EXISTS explanations (
    explanation_id     BIGINT PRIMARY KEY,
    sample_id          BIGINT,                -- exactly one of sample_id / anomaly_id is set
    anomaly_id         BIGINT,
    dataset            VARCHAR,
    nla_id             VARCHAR,               -- nlas.name, or the label given at import
    position           VARCHAR,               -- last_prompt | first_reply | reply:N | token:N | imported
    token_index        INTEGER,
    layer              INTEGER,
    hidden_state_index INTEGER,
    text               VARCHAR NOT NULL,
    raw_output         VARCHAR,
    truncated          BOOLEAN DEFAULT false,
    flags              JSON,                  -- e.g. ["early_position", "norm_outlier"]
    activation_norm    DOUBLE,
    mse                DOUBLE,
    cos                DOUBLE,
    fve                DOUBLE,
    explanation_key    VARCHAR UNIQUE,        -- idempotency key: owner|nla|position|layer
    created_at         TIMESTAMP DEFAULT current_timestamp
);

-- ---------------------------------------------------------------- embeddings & indexes
CREATE TABLE IF NOT EXISTS embedding_cache (
    model_id     VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,            -- sha256 of the exact text embedded
    vector       FLOAT[] NOT NULL,
    created_at   TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (model_id, content_hash)
);

CREATE TABLE IF NOT EXISTS indexes (
    dataset     VARCHAR NOT NULL,
    field       VARCHAR NOT NULL,             -- prompt | reply | pair | explanation
    path        VARCHAR NOT NULL,             -- relative to the workspace
    manifest    JSON,
    built_at    TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (dataset, field)
);

-- ---------------------------------------------------------------- triage
CREATE SEQUENCE IF NOT EXISTS triage_run_id_seq START 1;
CREATE TABLE IF NOT EXISTS triage_runs (
    run_id         BIGINT PRIMARY KEY,
    anomaly_id     BIGINT NOT NULL,
    dataset        VARCHAR NOT NULL,
    status         VARCHAR,
    params         JSON,
    index_versions JSON,
    summary        JSON,
    started_at     TIMESTAMP DEFAULT current_timestamp,
    finished_at    TIMESTAMP
);

CREATE TABLE IF NOT EXISTS findings (
    run_id     BIGINT NOT NULL,
    rank       INTEGER NOT NULL,              -- 1 = most suspect
    sample_id  BIGINT NOT NULL,
    row_id     VARCHAR,
    score      DOUBLE,
    cluster_id INTEGER,
    signals    JSON,
    PRIMARY KEY (run_id, sample_id)
);

CREATE TABLE IF NOT EXISTS clusters (
    run_id     BIGINT NOT NULL,
    cluster_id INTEGER NOT NULL,
    rank       INTEGER,                       -- 1 = explains the anomaly best
    size       INTEGER,
    label      VARCHAR,
    score      DOUBLE,
    profile    JSON,
    PRIMARY KEY (run_id, cluster_id)
);

-- every member of every cluster (findings hold only the top --limit rows)
CREATE TABLE IF NOT EXISTS cluster_members (
    run_id     BIGINT NOT NULL,
    cluster_id INTEGER NOT NULL,
    sample_id  BIGINT NOT NULL,
    score      DOUBLE,
    PRIMARY KEY (run_id, sample_id)
);

-- ---------------------------------------------------------------- data-quality pipelines
CREATE SEQUENCE IF NOT EXISTS pipeline_run_id_seq START 1;
CREATE TABLE IF NOT EXISTS pipeline_runs (
    pipeline_run_id BIGINT PRIMARY KEY,
    pipeline        VARCHAR NOT NULL,
    dataset         VARCHAR NOT NULL,
    definition      JSON,
    definition_hash VARCHAR,
    dataset_version BIGINT,
    engine          VARCHAR,
    status          VARCHAR,                  -- running | done | failed
    stats           JSON,
    started_at      TIMESTAMP DEFAULT current_timestamp,
    finished_at     TIMESTAMP
);

CREATE TABLE IF NOT EXISTS pipeline_batches (
    pipeline_run_id BIGINT NOT NULL,
    batch_id        BIGINT NOT NULL,
    rows_in         BIGINT,
    committed_at    TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (pipeline_run_id, batch_id)
);

CREATE TABLE IF NOT EXISTS quality_findings (
    pipeline_run_id BIGINT NOT NULL,
    "check"         VARCHAR NOT NULL,
    sample_id       BIGINT NOT NULL,
    severity        VARCHAR,                  -- info | warning | error
    score           DOUBLE,
    detail          VARCHAR,
    group_id        VARCHAR,                  -- e.g. duplicate group
    PRIMARY KEY (pipeline_run_id, "check", sample_id)
);

-- ---------------------------------------------------------------- counterfactual probes
CREATE SEQUENCE IF NOT EXISTS probe_id_seq START 1;
CREATE TABLE IF NOT EXISTS probes (
    probe_id           BIGINT PRIMARY KEY,
    anomaly_id         BIGINT NOT NULL,
    variant            VARCHAR NOT NULL,      -- original | replace:A=B | auto-swap:... | drop:...
    prompt             VARCHAR,
    reply              VARCHAR,
    reply_lang         VARCHAR,
    behaviour_persists BOOLEAN,
    explanation        VARCHAR,
    detail             JSON,
    created_at         TIMESTAMP DEFAULT current_timestamp
);

-- ---------------------------------------------------------------- views for SQL users
CREATE OR REPLACE VIEW v_findings AS
SELECT f.run_id, t.anomaly_id, t.dataset, f.rank, f.score, f.cluster_id, c.label AS cluster_label,
       f.sample_id, s.row_id, s.prompt, s.reply, s.prompt_lang, s.reply_lang, s.meta, f.signals
FROM findings f
JOIN triage_runs t USING (run_id)
JOIN samples s USING (sample_id)
LEFT JOIN clusters c ON c.run_id = f.run_id AND c.cluster_id = f.cluster_id;

CREATE OR REPLACE VIEW v_cluster_members AS
SELECT m.run_id, m.cluster_id, c.rank AS cluster_rank, c.label AS cluster_label, m.score,
       m.sample_id, s.dataset, s.row_id, s.prompt, s.reply, s.prompt_lang, s.reply_lang, s.meta
FROM cluster_members m
JOIN clusters c ON c.run_id = m.run_id AND c.cluster_id = m.cluster_id
JOIN samples s USING (sample_id);

CREATE OR REPLACE VIEW v_quality_findings AS
SELECT q.pipeline_run_id, r.pipeline, s.dataset, q."check", q.severity, q.score, q.detail,
       q.group_id, q.sample_id, s.row_id, s.prompt, s.reply, s.prompt_lang, s.reply_lang
FROM quality_findings q
JOIN pipeline_runs r USING (pipeline_run_id)
JOIN samples s USING (sample_id);

CREATE OR REPLACE VIEW v_explanations AS
SELECT e.*, s.row_id, s.prompt AS sample_prompt, s.reply AS sample_reply, a.title AS anomaly_title
FROM explanations e
LEFT JOIN samples s USING (sample_id)
LEFT JOIN anomalies a USING (anomaly_id);
"""

MIGRATIONS: list[Migration] = [
    Migration(1, "initial schema: datasets, samples, rejects, anomalies, explanations, "
                 "indexes, triage, pipelines, probes, views", _V1),
    # byte offset so a killed JSONL ingest resumes with a seek. IF NOT EXISTS: workspaces of
    # older releases may already have the column without this version recorded.
    Migration(2, "ingest: ingest_progress.bytes_done (resume offset for JSONL)", r"""
ALTER TABLE ingest_progress ADD COLUMN IF NOT EXISTS bytes_done BIGINT;
"""),
    # ingest: the verbatim record is the largest column and is read whole or not at all;
    # DuckDB's default string compression (dict+FSST) cost ~40 % of ingest time on it,
    # ZSTD writes it several times faster and smaller. prompt/reply keep the default
    # (ZSTD would make random row fetches ~6x slower). Same columns, order and
    # constraints; DuckDB has no ALTER ... SET COMPRESSION, hence the copy.
    Migration(3, "ingest: samples.record stored with ZSTD compression (table rebuilt)", r"""
SET enable_progress_bar = false;   -- DuckDB's bar would print to stdout (breaks --json)
CREATE TABLE samples_v11 (
    sample_id        BIGINT PRIMARY KEY,
    dataset          VARCHAR NOT NULL,
    row_id           VARCHAR NOT NULL,
    prompt           VARCHAR,
    reply            VARCHAR,
    record           JSON USING COMPRESSION zstd,
    meta             JSON,
    content_hash     VARCHAR NOT NULL,
    prompt_lang      VARCHAR,
    prompt_lang_conf DOUBLE,
    reply_lang       VARCHAR,
    reply_lang_conf  DOUBLE,
    n_turns          INTEGER,
    source_file      VARCHAR,
    source_line      BIGINT,
    ingest_id        BIGINT,
    created_at       TIMESTAMP DEFAULT current_timestamp,
    UNIQUE (dataset, row_id)
);
INSERT INTO samples_v11 SELECT * FROM samples ORDER BY sample_id;
DROP TABLE samples;
ALTER TABLE samples_v11 RENAME TO samples;
"""),
    # triage: per-row features derived from a dataset's text (normalised token
    # strings, requested language), computed once per dataset state instead of on every triage
    Migration(4, "triage: triage_row_features, triage_tokens, triage_feature_sets (per-dataset cache)", r"""
CREATE TABLE IF NOT EXISTS triage_feature_sets (
    dataset         VARCHAR PRIMARY KEY,
    feature_version VARCHAR NOT NULL,         -- code version of the derivation
    dataset_version INTEGER NOT NULL,
    rows            BIGINT NOT NULL,
    max_sample_id   BIGINT NOT NULL,
    fingerprint     VARCHAR NOT NULL,         -- bit_xor(hash(sample_id, prompt, reply))
    seconds         DOUBLE,
    built_at        TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS triage_row_features (
    dataset             VARCHAR NOT NULL,
    sample_id           BIGINT NOT NULL,
    nr                  VARCHAR,              -- reply: lower-case tokens, space-separated, padded
    np                  VARCHAR,              -- prompt: the same
    requested_lang      VARCHAR,              -- language the prompt asks the reply to be in
    translation_request BOOLEAN
);
CREATE TABLE IF NOT EXISTS triage_tokens (
    dataset VARCHAR NOT NULL,
    field   VARCHAR NOT NULL,                 -- reply | prompt
    token   VARCHAR NOT NULL,
    rows    INTEGER[]                         -- sorted row positions (sample_id order)
);
"""),
    # pipelines: per-batch features of whole-dataset checks (duplicates, length outliers),
    # committed with the batch so a resumed run needs no recomputation.
    Migration(5, "pipelines: pipeline_state (per-batch map output of global checks)", r"""
CREATE TABLE IF NOT EXISTS pipeline_state (
    pipeline_run_id BIGINT NOT NULL,
    step_index      INTEGER NOT NULL,
    batch_id        BIGINT NOT NULL,
    payload         BLOB,                     -- Arrow IPC stream of per-row features
    PRIMARY KEY (pipeline_run_id, step_index, batch_id)
);
"""),
    # nla: per-sample progress of `explain dataset` (resume, failures) and runs
    Migration(6, "nla: explain_progress (resumable explain dataset), explain_runs", r"""
CREATE TABLE IF NOT EXISTS explain_progress (
    nla_id             VARCHAR NOT NULL,
    sample_id          BIGINT NOT NULL,
    position           VARCHAR NOT NULL,      -- the requested position (every_reply, not reply:N)
    layer              INTEGER NOT NULL,
    hidden_state_index INTEGER NOT NULL,
    dataset            VARCHAR,
    status             VARCHAR,               -- ok | no_position | failed
    n_explanations     INTEGER,
    detail             VARCHAR,
    done_at            TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (nla_id, sample_id, position, layer, hidden_state_index)
);
CREATE SEQUENCE IF NOT EXISTS explain_run_id_seq START 1;
CREATE TABLE IF NOT EXISTS explain_runs (
    run_id      BIGINT PRIMARY KEY,
    nla_id      VARCHAR NOT NULL,
    dataset     VARCHAR,
    anomaly_id  BIGINT,
    params      JSON,
    stats       JSON,                         -- counts, seconds, explanations/s, tokens/s
    status      VARCHAR,                      -- running | done | interrupted | failed
    started_at  TIMESTAMP DEFAULT current_timestamp,
    finished_at TIMESTAMP
);
"""),
    # nla: several sampled explanations per activation. Each row records its sample index and
    # generation settings; explain_progress gains the settings' label (``variant``, '' for
    # greedy with the sidecar prompt) in its key, so a sampled run does not count greedy rows
    # as done. DuckDB cannot change a primary key in place, hence the copy.
    Migration(7, "nla: explanations.sample_index + generation, explain_progress.variant", r"""
ALTER TABLE explanations ADD COLUMN IF NOT EXISTS sample_index INTEGER DEFAULT 0;
ALTER TABLE explanations ADD COLUMN IF NOT EXISTS generation JSON;
CREATE TABLE explain_progress_v7 (
    nla_id             VARCHAR NOT NULL,
    sample_id          BIGINT NOT NULL,
    position           VARCHAR NOT NULL,
    layer              INTEGER NOT NULL,
    hidden_state_index INTEGER NOT NULL,
    dataset            VARCHAR,
    status             VARCHAR,
    n_explanations     INTEGER,
    detail             VARCHAR,
    done_at            TIMESTAMP DEFAULT current_timestamp,
    variant            VARCHAR NOT NULL DEFAULT '',  -- generation settings label ('' = default)
    PRIMARY KEY (nla_id, sample_id, position, layer, hidden_state_index, variant)
);
INSERT INTO explain_progress_v7 (nla_id, sample_id, position, layer, hidden_state_index, dataset,
                                 status, n_explanations, detail, done_at, variant)
SELECT nla_id, sample_id, position, layer, hidden_state_index, dataset, status, n_explanations,
       detail, done_at, '' FROM explain_progress;
DROP TABLE explain_progress;
ALTER TABLE explain_progress_v7 RENAME TO explain_progress;
CREATE OR REPLACE VIEW v_explanations AS
SELECT e.*, s.row_id, s.prompt AS sample_prompt, s.reply AS sample_reply, a.title AS anomaly_title
FROM explanations e
LEFT JOIN samples s USING (sample_id)
LEFT JOIN anomalies a USING (anomaly_id);
"""),
    # attribution: influence passes cached per (target, dataset version, query, method), and
    # retrain-without verifications of a triage run's cluster
    Migration(8, "attribution: influence_runs, influence_scores, verifications", r"""
CREATE TABLE IF NOT EXISTS influence_runs (
    cache_key       VARCHAR PRIMARY KEY,      -- hash of target fingerprint, dataset version, query, knobs
    target          VARCHAR NOT NULL,         -- the target model directory
    dataset         VARCHAR NOT NULL,
    dataset_version BIGINT,
    query_prompt    VARCHAR,                  -- the anomaly's prompt and reply the scores are for
    query_reply     VARCHAR,
    method          VARCHAR,                  -- ekfac | gradcos
    params          JSON,
    rows            BIGINT,
    seconds         DOUBLE,                   -- the pass that computed them
    created_at      TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS influence_scores (
    cache_key VARCHAR NOT NULL,
    sample_id BIGINT NOT NULL,
    score     DOUBLE,                         -- > 0: the row pushes the target towards the reply
    PRIMARY KEY (cache_key, sample_id)
);
CREATE SEQUENCE IF NOT EXISTS verification_id_seq START 1;
CREATE TABLE IF NOT EXISTS verifications (
    verification_id BIGINT PRIMARY KEY,
    run_id          BIGINT NOT NULL,          -- the triage run
    cluster_id      INTEGER NOT NULL,
    anomaly_id      BIGINT,
    target          VARCHAR,
    train_config    JSON,
    mode            VARCHAR,                  -- in_process | external (script written, not run)
    removed_rows    INTEGER,
    probes          INTEGER,                  -- probe prompts the rate is measured on
    rate_trained    DOUBLE,                   -- behaviour rate of the registered target
    rate_without    DOUBLE,                   -- ... retrained without the cluster
    rate_random     DOUBLE,                   -- ... mean over the random removals
    effect          DOUBLE,                   -- rate_random - rate_without
    verdict         VARCHAR,                  -- causes | no_effect | inconclusive | not_run
    detail          JSON,                     -- intervals, per-seed rates, probe replies, seconds
    created_at      TIMESTAMP DEFAULT current_timestamp
);
"""),
    # triage: the expected reply language of each row's prompt and why (a request, a
    # translation, the prompt's own language), for "asked for X, answered in Y" anomalies
    Migration(9, "triage: triage_row_features.expected_lang, expected_reason", r"""
ALTER TABLE triage_row_features ADD COLUMN IF NOT EXISTS expected_lang VARCHAR;
ALTER TABLE triage_row_features ADD COLUMN IF NOT EXISTS expected_reason VARCHAR;
"""),
    # triage: the comment lines of each row's fenced code (text and shape), lexed once per row
    # state and lexer configuration instead of on every triage of a code comment anomaly
    Migration(10, "triage: triage_code_shapes (per-row comment lines of fenced code)", r"""
CREATE TABLE IF NOT EXISTS triage_code_shapes (
    dataset      VARCHAR NOT NULL,
    sample_id    BIGINT NOT NULL,
    config       VARCHAR NOT NULL,            -- derivation version + lexer knobs
    content_hash VARCHAR NOT NULL,            -- samples.content_hash the lines were lexed from
    texts        VARCHAR[],                   -- comment lines, stripped, in order
    shapes       VARCHAR[],                   -- their shapes (position:top|nested:foreign|about)
    PRIMARY KEY (dataset, sample_id, config)
);
"""),
]


# Older releases numbered migrations per area. Each (old version, its recorded description)
# names exactly one migration above; the description guards against a future migration that
# happens to reuse an old number.
LEGACY_VERSIONS: dict[tuple[int, str], int] = {
    (10, "ingest: ingest_progress.bytes_done (resume offset for JSONL)"): 2,
    (11, "ingest: samples.record stored with ZSTD compression (table rebuilt)"): 3,
    (30, "triage: triage_row_features, triage_tokens, triage_feature_sets (per-dataset cache)"): 4,
    (40, "pipelines: pipeline_state (per-batch map output of global checks)"): 5,
    (50, "nla: explain_progress (resumable explain dataset), explain_runs"): 6,
}


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One DuckDB transaction on ``con``: COMMIT when the block ends normally, ROLLBACK on any
    exception (re-raised), including KeyboardInterrupt. The one transaction helper:
    ``Workspace.transaction`` uses it on the workspace connection."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the transaction may already be aborted
            pass
        raise
    con.execute("COMMIT")


def _recorded(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str]]:
    return [(int(v), d) for v, d in con.execute(
        "SELECT version, description FROM schema_version ORDER BY version").fetchall()]


def _renumber_legacy(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int]]:
    """Rewrite ``schema_version`` rows recorded under the old per-area numbers to 1..N;
    returns the (old, new) pairs rewritten. Idempotent; one transaction."""
    old = [(v, d, LEGACY_VERSIONS[(v, d)]) for v, d in _recorded(con) if (v, d) in LEGACY_VERSIONS]
    if not old:
        return []
    desc = {m.version: m.description for m in MIGRATIONS}
    with transaction(con):
        for v, d, new in old:
            con.execute("DELETE FROM schema_version WHERE version = ? AND description = ?", [v, d])
            con.execute("INSERT INTO schema_version (version, description) VALUES (?, ?) "
                        "ON CONFLICT DO NOTHING", [new, desc[new]])
    return [(v, new) for v, _, new in old]


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """Highest applied migration, 0 for an empty database."""
    has = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchall()[0][0]
    if not has:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchall()[0]
    return int(row[0] or 0)


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied. The only code
    that changes the schema."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, description VARCHAR,"
        " applied_at TIMESTAMP DEFAULT current_timestamp)"
    )
    _renumber_legacy(con)
    done = {v for v, _ in _recorded(con)}
    applied = []
    for m in sorted(MIGRATIONS, key=lambda m: m.version):
        if m.version in done:
            continue
        with transaction(con):
            con.execute(m.sql)
            con.execute(
                "INSERT INTO schema_version (version, description) VALUES (?, ?)",
                [m.version, m.description],
            )
        applied.append(m.version)
    return applied


def pending(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Versions of migrations not yet recorded (any of them, not only those above the max).
    A workspace still recorded under the legacy numbering lists its renumbered versions too,
    so opening it runs :func:`migrate`, which rewrites them."""
    if current_version(con) == 0:
        return sorted(m.version for m in MIGRATIONS)
    done = {v for v, _ in _recorded(con)}
    return sorted(m.version for m in MIGRATIONS if m.version not in done)


def latest_version() -> int:
    return max(m.version for m in MIGRATIONS)

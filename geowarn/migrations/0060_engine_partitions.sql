-- Engine partitions (alerts/engine/leadership.py): several `geowarn engine --partitions N`
-- processes ("members" of one engine group, named by --name) split the registry.
--
-- Leadership itself is PostgreSQL advisory locks on each member's control session (one per
-- partition, one per member): a lock is free exactly when the session holding it is gone.
-- These tables are the heartbeats beside them: who is a member and which member leads which
-- partition, refreshed every second, so a member that is alive but stuck (its session open,
-- its heartbeat stale) can be fenced, and operators can see the split.
CREATE TABLE IF NOT EXISTS engine_members (
    engine      text NOT NULL,          -- the group's base name (--name)
    member      text NOT NULL,          -- this process (--member; default host-pid)
    partitions  integer NOT NULL CHECK (partitions >= 1),
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (engine, member)
);

CREATE TABLE IF NOT EXISTS engine_partitions (
    engine      text NOT NULL,
    partitions  integer NOT NULL CHECK (partitions >= 1),
    partition   integer NOT NULL CHECK (partition >= 0 AND partition < partitions),
    leader      text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),   -- when this leader took it
    seen_at     timestamptz NOT NULL DEFAULT now(),   -- the leader's last heartbeat
    PRIMARY KEY (engine, partitions, partition)
);

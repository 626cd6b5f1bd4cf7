-- Cloakroom's session schema, version 1. "cloakroom" below is the schema
-- the store was configured with.
--
-- One row per session. `data` and `notes` map each name to its value's
-- JSON text, kept as a jsonb string so the text reads back byte for byte.
-- Times are milliseconds since the Unix epoch, as the application's clock
-- gives them; a session is live while expires_at > now, and expires_at
-- never passes deadline.
--
-- Every write moves expires_at, so it has no index: an update that
-- changes no indexed column stays on its page (a HOT update, which the
-- fillfactor leaves room for) and writes no index entry. The sweep of
-- expired rows scans the table instead, a few times an hour.
CREATE TABLE IF NOT EXISTS cloakroom.sessions (
    id         bytea  PRIMARY KEY,
    data       jsonb  NOT NULL DEFAULT '{}',
    notes      jsonb  NOT NULL DEFAULT '{}',
    created    bigint NOT NULL,
    deadline   bigint NOT NULL,
    expires_at bigint NOT NULL,
    user_key   text
) WITH (fillfactor = 80);

CREATE INDEX IF NOT EXISTS sessions_user_key ON cloakroom.sessions (user_key)
    WHERE user_key IS NOT NULL;

-- Applies one patch in one statement: create or change, clear, set and
-- remove names, add notifications, rename, restart the lifetime, push the
-- idle deadline, end an emptied session. The row is locked for the whole
-- call, so concurrent patches to different names all survive.
-- outcome: 0 done, 1 gone (nothing written), 2 ended, 3 over the size
-- limits (nothing written; names and bytes say by how much).
CREATE OR REPLACE FUNCTION cloakroom.apply(
    p_id bytea, p_now bigint, p_idle bigint, p_absolute bigint,
    p_create boolean, p_clear boolean, p_set jsonb, p_remove text[],
    p_notes jsonb, p_rename bytea, p_restart boolean, p_end_if_empty boolean,
    p_max_names bigint, p_max_bytes bigint,
    OUT outcome smallint, OUT names bigint, OUT bytes bigint)
LANGUAGE plpgsql AS $$
DECLARE
    s cloakroom.sessions%ROWTYPE;
    new_data jsonb := '{}';
    new_notes jsonb := '{}';
    new_deadline bigint;
BEGIN
    outcome := 1;
    names := 0;
    bytes := 0;
    IF p_rename IS NOT NULL THEN
        DELETE FROM cloakroom.sessions WHERE id = p_rename AND expires_at <= p_now;
        PERFORM 1 FROM cloakroom.sessions WHERE id = p_rename;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    IF p_create THEN
        DELETE FROM cloakroom.sessions WHERE id = p_id AND expires_at <= p_now;
        PERFORM 1 FROM cloakroom.sessions WHERE id = p_id;
        IF FOUND THEN
            RETURN;
        END IF;
    ELSE
        SELECT * INTO s FROM cloakroom.sessions
            WHERE id = p_id AND expires_at > p_now AND deadline > p_now
            FOR UPDATE;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        IF NOT p_clear THEN
            new_data := s.data;
        END IF;
        new_notes := s.notes;
    END IF;
    new_data := (new_data - p_remove) || p_set;
    new_notes := new_notes || p_notes;
    IF p_max_names IS NOT NULL AND p_set <> '{}'::jsonb THEN
        SELECT count(*), coalesce(sum(octet_length(key) + octet_length(value)), 0)
            INTO names, bytes
            FROM jsonb_each_text(new_data);
        IF names > p_max_names OR bytes > p_max_bytes THEN
            outcome := 3;
            RETURN;
        END IF;
    END IF;
    IF p_end_if_empty AND new_data = '{}'::jsonb AND new_notes = '{}'::jsonb THEN
        IF NOT p_create THEN
            DELETE FROM cloakroom.sessions WHERE id = p_id;
        END IF;
        outcome := 2;
        RETURN;
    END IF;
    IF p_create THEN
        new_deadline := p_now + p_absolute;
        INSERT INTO cloakroom.sessions (id, data, notes, created, deadline, expires_at)
            VALUES (coalesce(p_rename, p_id), new_data, new_notes, p_now, new_deadline,
                    least(p_now + p_idle, new_deadline))
            ON CONFLICT (id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    ELSE
        new_deadline := CASE WHEN p_restart THEN p_now + p_absolute ELSE s.deadline END;
        UPDATE cloakroom.sessions
            SET id = coalesce(p_rename, p_id), data = new_data, notes = new_notes,
                deadline = new_deadline, expires_at = least(p_now + p_idle, new_deadline)
            WHERE id = p_id;
    END IF;
    outcome := 0;
END
$$;

-- Removes and returns one notification, under the row's lock, so
-- concurrent takers get it once between them.
CREATE OR REPLACE FUNCTION cloakroom.take_notification(
    p_id bytea, p_name text, p_now bigint)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v text;
BEGIN
    SELECT notes ->> p_name INTO v FROM cloakroom.sessions
        WHERE id = p_id AND expires_at > p_now AND deadline > p_now
        FOR UPDATE;
    IF v IS NOT NULL THEN
        UPDATE cloakroom.sessions SET notes = notes - p_name WHERE id = p_id;
    END IF;
    RETURN v;
END
$$;

-- Adds p_by to an integer name, saturating at the bigint bounds, and
-- pushes the idle deadline. live is false when there is no live session;
-- not_integer carries a stored value that is not a JSON integer (nothing
-- is written then).
CREATE OR REPLACE FUNCTION cloakroom.increment(
    p_id bytea, p_name text, p_by bigint, p_now bigint, p_idle bigint,
    OUT live boolean, OUT value bigint, OUT not_integer text)
LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    dl bigint;
    n numeric;
BEGIN
    live := false;
    SELECT data ->> p_name, deadline INTO stored, dl FROM cloakroom.sessions
        WHERE id = p_id AND expires_at > p_now AND deadline > p_now
        FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    live := true;
    IF stored IS NULL THEN
        n := 0;
    ELSIF stored ~ '^-?(0|[1-9][0-9]{0,18})$' THEN
        n := stored::numeric;
    ELSE
        not_integer := stored;
        RETURN;
    END IF;
    IF n < -9223372036854775808 OR n > 9223372036854775807 THEN
        not_integer := stored;
        RETURN;
    END IF;
    value := greatest(least(n + p_by, 9223372036854775807), -9223372036854775808)::bigint;
    UPDATE cloakroom.sessions
        SET data = data || jsonb_build_object(p_name, value::text),
            expires_at = least(p_now + p_idle, dl)
        WHERE id = p_id;
END
$$;

-- Adds a session to its user's index (the user_key column), under a lock
-- per user so concurrent sign-ins never pass the cap. Live members count
-- only while their data still names the user (p_bound under p_user_name).
-- Least recently used first: the nearest idle deadline.
CREATE OR REPLACE FUNCTION cloakroom.admit(
    p_user text, p_user_name text, p_bound text, p_id bytea, p_now bigint,
    p_max bigint, p_refuse boolean, p_check_only boolean,
    OUT refused boolean, OUT ended bytea[])
LANGUAGE plpgsql AS $$
DECLARE
    live bytea[];
BEGIN
    refused := false;
    ended := '{}';
    PERFORM pg_advisory_xact_lock(hashtextextended('cloakroom.sessions user ' || p_user, 0));
    SELECT coalesce(array_agg(id ORDER BY expires_at), '{}') INTO live
        FROM cloakroom.sessions
        WHERE user_key = p_user AND data ->> p_user_name = p_bound
          AND expires_at > p_now AND deadline > p_now;
    IF p_id = ANY(live) THEN
        RETURN;
    END IF;
    IF p_max IS NOT NULL AND cardinality(live) >= p_max THEN
        IF p_refuse THEN
            refused := true;
            RETURN;
        END IF;
        IF p_check_only THEN
            RETURN;
        END IF;
        ended := live[1:cardinality(live) + 1 - p_max];
        DELETE FROM cloakroom.sessions WHERE id = ANY(ended);
    END IF;
    IF NOT p_check_only THEN
        UPDATE cloakroom.sessions SET user_key = p_user WHERE id = p_id;
    END IF;
END
$$;

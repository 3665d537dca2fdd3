// The tables as diesel sees them; kept by hand in step with migrations/{sqlite,postgres}.

diesel::table! {
    accounts (id) {
        id -> Text,
        track -> Text,
        key_thumbprint -> Text,
        jwk -> Text,
        status -> Text,
        contact -> Text,
        tos_agreed -> Bool,
        eab_kid -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        asset_id -> Nullable<Text>,
        person_id -> Nullable<Text>,
    }
}

diesel::table! {
    orders (id) {
        id -> Text,
        track -> Text,
        account_id -> Text,
        status -> Text,
        identifiers -> Text,
        profile -> Text,
        expires -> BigInt,
        error -> Nullable<Text>,
        certificate_serial -> Nullable<Text>,
        replaces -> Nullable<Text>,
        created_at -> BigInt,
        created_micros -> BigInt,
    }
}

diesel::table! {
    authorizations (id) {
        id -> Text,
        track -> Text,
        account_id -> Text,
        order_id -> Text,
        identifier_type -> Text,
        identifier_value -> Text,
        wildcard -> Bool,
        status -> Text,
        expires -> BigInt,
        position -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    challenges (id) {
        id -> Text,
        authorization_id -> Text,
        kind -> Text,
        token -> Text,
        status -> Text,
        validated -> Nullable<BigInt>,
        error -> Nullable<Text>,
        position -> BigInt,
    }
}

diesel::table! {
    certificates (serial) {
        serial -> Text,
        track -> Text,
        account_id -> Nullable<Text>,
        order_id -> Nullable<Text>,
        asset_id -> Nullable<Text>,
        person_id -> Nullable<Text>,
        profile -> Text,
        identifiers -> Text,
        spki_sha256 -> Text,
        not_before -> BigInt,
        not_after -> BigInt,
        der -> Binary,
        status -> Text,
        revocation_reason -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        replaced_by -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    audit_events (track, seq) {
        track -> Text,
        seq -> BigInt,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        subject -> Text,
        details -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    nonces (value) {
        value -> Text,
        expires -> BigInt,
    }
}

diesel::table! {
    crl_state (track) {
        track -> Text,
        crl_number -> BigInt,
        this_update -> BigInt,
        next_update -> BigInt,
        der -> Binary,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        subject -> Text,
        revoked_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    assets (id) {
        id -> Text,
        name -> Text,
        kind -> Text,
        owner_team -> Text,
        owner_email -> Text,
        service -> Text,
        environment -> Text,
        spiffe_id -> Nullable<Text>,
        profile -> Nullable<Text>,
        status -> Text,
        compromised -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        decommissioned_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    asset_identifiers (asset_id, identifier_type, identifier_value) {
        asset_id -> Text,
        identifier_type -> Text,
        identifier_value -> Text,
    }
}

diesel::table! {
    eab_keys (kid) {
        kid -> Text,
        track -> Text,
        asset_id -> Nullable<Text>,
        person_id -> Nullable<Text>,
        sealed_key -> Binary,
        single_use -> Bool,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        track -> Text,
        recipient -> Text,
        subject -> Text,
        body_text -> Text,
        body_html -> Text,
        dedupe_key -> Nullable<Text>,
        created_at -> BigInt,
        attempts -> BigInt,
        next_attempt_at -> BigInt,
        sent_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        sender -> Nullable<Text>,
        auto_submitted -> Nullable<Text>,
        dedupe_until -> Nullable<BigInt>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(orders, authorizations, challenges);
diesel::allow_tables_to_appear_in_same_query!(assets, asset_identifiers);

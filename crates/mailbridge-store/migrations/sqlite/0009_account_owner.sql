-- The user an account belongs to (an API token's or a person's user name): a token
-- or person with the role `user` works on the accounts it owns only. NULL: nobody's
-- (administrators' and auditors' alone).
ALTER TABLE accounts ADD COLUMN owner TEXT;
CREATE INDEX accounts_owner ON accounts (owner) WHERE owner IS NOT NULL;

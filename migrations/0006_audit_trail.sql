-- The audit trail in the Telnyx shape: who made the change (the operator or Steward itself
-- as `telnyx`, the account's own user, or its manager), which account acted, and which
-- resource changed. `action` holds the change type and `details` the list of changed
-- fields as JSON. Rows written before this migration have NULL in the new columns (they
-- were all the operator's) and an object in `details`.
ALTER TABLE audit_events ADD COLUMN change_made_by TEXT;
ALTER TABLE audit_events ADD COLUMN actor_account_id TEXT;
ALTER TABLE audit_events ADD COLUMN resource_id TEXT;

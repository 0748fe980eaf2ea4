-- The platform's counter-books (revenue, funding, adjustments, credit lines, card payments)
-- add up every account for ever: a cached BIGINT of nano-units would run out after ~9.2
-- billion currency units, and then refuse every further movement. They keep no cached row
-- from now on; their balance is the sum of their postings, which `verify-ledger` takes
-- exactly. The rows cached so far are dropped so that none goes stale.
DELETE FROM book_balances WHERE book LIKE 'platform:%';

-- verify-ledger sums every book's postings in one pass: with the amount in the book index
-- that pass reads the index alone, in book order, instead of one table row per posting.
-- It replaces the index on the book alone (every query that used that one can use this).
DROP INDEX postings_book;
CREATE INDEX postings_book ON postings (book, amount_nanos);

-- Version 2: session close records the logout.
ALTER TABLE users ADD COLUMN last_logout INTEGER;

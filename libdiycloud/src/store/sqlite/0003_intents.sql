-- Version 3: changes that span the database and the system's account files
-- (`user add` with useradd, `user del` with userdel) record their intent
-- first, so a command killed half-way is finished by running it again.
-- A row with an intent never logs in.
ALTER TABLE users ADD COLUMN pending TEXT CHECK (pending IN ('add', 'del'));
-- Marks the file as a diycloud database ("DIYC"), so `init` can tell it
-- from any other SQLite file.
PRAGMA application_id = 1145657667;

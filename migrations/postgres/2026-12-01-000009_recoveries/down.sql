DROP INDEX recoveries_one_pending;
DROP INDEX recoveries_enrollment;
DROP INDEX recoveries_person;
DROP TABLE recoveries;
ALTER TABLE enrollments DROP COLUMN grants_level;

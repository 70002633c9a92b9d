-- A non-superuser owner role without BYPASSRLS: migrations FORCE row-level security, so even the
-- owner sees only the tenant set in app.tenant_id.
CREATE ROLE memberhub LOGIN PASSWORD 'memberhub' NOSUPERUSER NOBYPASSRLS;
CREATE DATABASE memberhub OWNER memberhub;

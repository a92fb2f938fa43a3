"""Input and output serializers of the admin API (scopes `app:admin` and `platform:admin`), one module
per resource as the views in routing/api/admin/."""

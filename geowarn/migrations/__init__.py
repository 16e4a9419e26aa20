"""Schema migrations, applied in order by geowarn.migrate (file names NNNN_name.sql|py)."""

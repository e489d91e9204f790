"""cascade-ci: Write-Audit-Publish for Apache Iceberg pipelines in GitHub Actions."""

__version__ = "0.1.0"

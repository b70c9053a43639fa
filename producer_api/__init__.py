"""The aiohttp API: uploads, job status, results and administration."""

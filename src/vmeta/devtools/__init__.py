"""Developer and test-suite helpers. Library code never imports this package."""

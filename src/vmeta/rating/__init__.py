"""Human evaluation: blind side-by-side rating studies of prediction files (`vmeta rate ...`), their ratings
store, the statistics (win rates, Bradley–Terry, agreement, metric–human agreement) and the report."""

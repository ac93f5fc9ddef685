"""The prod stack under faults and attacks (issue #15's "Done when"), run by compose-e2e.sh's
prod stage after tests/e2e_prod: test_attacks.py, then test_chaos.py, each printing its figures.

By hand, against a prod stack brought up as that stage does (MLOPS_SECRETS_DIR,
COMPOSE_FILE=docker-compose.yml:docker-compose.prod.yml, COMPOSE_PROJECT_NAME,
MLOPS_PROD_URL and MLOPS_RATE_LIMIT_PER_MINUTE=3000 exported before `up`):

    python -m pytest tests/e2e_prod/chaos -s -p no:cacheprovider
"""

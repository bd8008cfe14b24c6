# Shortcuts; each target is one command you can also type yourself.
.PHONY: up down test print-config dev deploy

up:            ## the stack on one host: nginx -> app, at http://127.0.0.1:8080
	docker compose up --build

down:
	docker compose down -v

deploy:        ## a new version with no failed request: build, start beside the old, drain it
	./scripts/deploy

dev:           ## source mounted and reloaded, dependency changes rebuilt (compose watch), /docs on
	docker compose -f docker-compose.yml -f docker-compose.dev.yml up --build --watch

test:          ## lint, type-check, unit, integration and end-to-end tests
	./scripts/test

print-config:  ## what gunicorn would run with in the compose app container (app.env, its limits)
	docker compose run --rm app print-config

# Targets kept beside what they run: the benchmark harness's (make bench, make bench-quick),
# where the harness exists.
-include bench/targets.mk

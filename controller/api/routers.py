"""The controller's routes, in the order the API mounts them."""

from fastapi import APIRouter

from controller.api import rollouts, watch, webhooks

ROUTERS: tuple[APIRouter, ...] = (rollouts.router, webhooks.router, watch.router)

"""An example resource: how a router, its models and a dependency fit together.

Replace the in-memory store with your database session dependency; the shape stays.
"""

from __future__ import annotations

import itertools
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field

router = APIRouter(prefix="/api/items", tags=["items"])


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    price: float = Field(ge=0)
    tags: list[str] = Field(default_factory=list, max_length=20)


class Item(ItemIn):
    id: int


class ItemStore:
    """Per-worker, in-memory: each gunicorn worker has its own. A stand-in for a database."""

    def __init__(self) -> None:
        self._items: dict[int, Item] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, item: ItemIn) -> Item:
        with self._lock:
            stored = Item(id=next(self._ids), **item.model_dump())
            self._items[stored.id] = stored
            return stored

    def get(self, item_id: int) -> Item | None:
        return self._items.get(item_id)

    def all(self) -> list[Item]:
        return list(self._items.values())


async def get_store(request: Request) -> ItemStore:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    store: ItemStore = request.app.state.items
    return store


Store = Annotated[ItemStore, Depends(get_store)]


@router.get("", name="list_items")
async def list_items(store: Store) -> list[Item]:
    return store.all()


@router.post("", name="create_item", status_code=status.HTTP_201_CREATED)
async def create_item(item: ItemIn, store: Store) -> Item:
    return store.add(item)


@router.get("/{item_id}", name="get_item", responses={404: {"description": "no such item"}})
async def get_item(item_id: int, store: Store) -> Item:
    item = store.get(item_id)
    if item is None:
        raise HTTPException(status_code=404, detail=f"item {item_id} not found")
    return item

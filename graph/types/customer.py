from datetime import datetime

import strawberry

from db.records import CustomerRecord
from graph.types.node import Node


@strawberry.type(description="A customer of the business; events belong to customers.")
class Customer(Node):
    external_id: str | None = strawberry.field(
        description="The business's own id for this customer, unique within the business."
    )
    name: str | None
    email: str | None
    created_at: datetime

    @classmethod
    def from_record(cls, record: CustomerRecord) -> "Customer":
        return cls(
            id=strawberry.ID(record.id),
            external_id=record.external_id,
            name=record.name,
            email=record.email,
            created_at=record.created_at,
        )

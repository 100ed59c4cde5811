import strawberry

from db.records import BusinessRecord
from graph.types.node import Node


@strawberry.type(description="A tenant: the business an API key acts for.")
class Business(Node):
    name: str

    @classmethod
    def from_record(cls, record: BusinessRecord) -> "Business":
        return cls(id=strawberry.ID(record.id), name=record.name)

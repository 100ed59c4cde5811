"""Meters of a business (SPEC §5, M1)."""

import dataclasses
from datetime import datetime
from typing import Any

from db import ids
from db.errors import RuleViolations, UserErrorCode, Violation
from db.pagination import Keyset, Page, PageRequest
from db.records import MeterRecord
from db.repositories.rollups import RollupRepository
from db.repositories.scoped import BusinessScopedRepository
from db.rules.bounds import MAX_SERVER_ID_LENGTH, too_long
from db.rules.meters import MeterDraft, check_new_meter
from db.settings import Settings
from db.tables import meters

# Meter ids are ULIDs: id order is creation order.
METER_KEYSET = Keyset("meters", (meters.c.id,), (str,))
MAX_METER_ID_LENGTH = 40


def meter_record(row: Any) -> MeterRecord:
    return MeterRecord(
        id=row.id,
        business_id=row.business_id,
        name=row.name,
        description=row.description,
        event_name=row.event_name,
        aggregation_type=row.aggregation_type,
        aggregation_key=row.aggregation_key,
        measurement_unit=row.measurement_unit,
        filter=row.filter,
        archived_at=row.archived_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        rollups_built_at=row.rollups_built_at,
        dimensions=tuple(row.dimensions),
    )


def meter_not_found(field: tuple[str, ...]) -> Violation:
    return Violation(
        UserErrorCode.METER_NOT_FOUND, "Your business has no meter with this id.", field
    )


class MeterRepository(BusinessScopedRepository):
    async def create(self, draft: MeterDraft, now: datetime) -> MeterRecord:
        """A new meter; raises RuleViolations (INVALID_INPUT, AGGREGATION_INVALID, …)."""
        meter_filter, violations = check_new_meter(draft)
        if violations:
            raise RuleViolations(violations)
        meter = MeterRecord(
            id=ids.new_id(ids.METER_PREFIX),
            business_id=self.business_id,
            name=draft.name,
            description=draft.description,
            event_name=draft.event_name,
            aggregation_type=draft.aggregation_type.value,
            aggregation_key=draft.aggregation_key,
            measurement_unit=draft.measurement_unit,
            filter=meter_filter.to_document() if meter_filter is not None else None,
            archived_at=None,
            created_at=now,
            updated_at=now,
            dimensions=draft.dimensions,
        )
        await self.session.execute(
            self.insert_values(
                meters,
                {
                    "id": meter.id,
                    "name": meter.name,
                    "description": meter.description,
                    "event_name": meter.event_name,
                    "aggregation_type": meter.aggregation_type,
                    "aggregation_key": meter.aggregation_key,
                    "measurement_unit": meter.measurement_unit,
                    "filter": meter.filter,
                    "dimensions": list(meter.dimensions),
                    "archived_at": None,
                    "created_at": meter.created_at,
                    "updated_at": meter.updated_at,
                },
            )
        )
        # Built before the meter is returned: a meter over existing history answers at once.
        await RollupRepository(self.session, self.business_id).build_meter(meter.id, now)
        return dataclasses.replace(meter, rollups_built_at=now)

    async def get(self, meter_id: str) -> MeterRecord | None:
        if len(meter_id) > MAX_METER_ID_LENGTH:
            return None
        row = (
            await self.session.execute(self.readable(meters).where(meters.c.id == meter_id))
        ).first()
        return meter_record(row) if row else None

    async def set_archived(self, meter_id: str, archived: bool, now: datetime) -> MeterRecord:
        """Archive or unarchive; doing it twice changes nothing the second time."""
        if violations := too_long(
            meter_id, MAX_SERVER_ID_LENGTH, ("id",), UserErrorCode.INVALID_INPUT
        ):
            raise RuleViolations(violations)
        meter = await self.get(meter_id)
        if meter is None:
            raise RuleViolations([meter_not_found(("id",))])
        if meter.archived == archived:
            return meter
        await self.session.execute(
            self.update_of(meters)
            .where(meters.c.id == meter.id)
            .values(archived_at=now if archived else None, updated_at=now)
        )
        updated = await self.get(meter.id)
        assert updated is not None
        return updated

    async def page(
        self, request: PageRequest, settings: Settings, *, include_archived: bool
    ) -> Page[MeterRecord]:
        query = self.readable(meters)
        if not include_archived:
            query = query.where(meters.c.archived_at.is_(None))
        return await self.page_of(query, METER_KEYSET, request, settings, meter_record)

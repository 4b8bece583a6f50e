-- +goose Up
-- A segment's members are listed in id order, a page a range of the index
-- on the segment and the member.
DROP INDEX member_segments_code;
CREATE INDEX member_segments_code ON member_segments (segment_code, member_id);

-- +goose Down
DROP INDEX member_segments_code;
CREATE INDEX member_segments_code ON member_segments (segment_code);
